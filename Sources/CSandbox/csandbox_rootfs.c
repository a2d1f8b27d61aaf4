// The space's file system (docs/SANDBOX.md, "The fresh root"). init builds it on a tmpfs while it still sees
// the host's tree (so `/usr`, `/dev/null` and the `/proc/self/fd/N` sources of the engine's descriptors
// resolve), then pivots into it and detaches the host's root, leaving nothing of the host visible but what was
// bound on purpose.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "csandbox_internal.h"

/// Where the new root's tmpfs is mounted before the pivot. Any existing host directory works; /tmp always
/// exists, and covering it only hides the host's /tmp from this mount namespace.
static const char csandbox_staging_root[] = "/tmp";

/// Creates directory `path` (relative to the new root) unless it already exists as a directory.
static void csandbox_make_directory(const char *step, const char *path, mode_t mode) {
    if (mkdir(path, mode) < 0 && errno != EEXIST) {
        csandbox_fail(step, errno, "mkdir %s", path);
    }
}

/// Writes a small generated file (the /etc files) with `contents`.
static void csandbox_write_file(const char *step, const char *path, const char *contents) {
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0) {
        csandbox_fail(step, errno, "create %s", path);
    }
    if (csandbox_write_all(fd, contents, strlen(contents)) < 0) {
        csandbox_fail(step, errno, "write %s", path);
    }
    if (close(fd) < 0) {
        csandbox_fail(step, errno, "close %s", path);
    }
}

/// Creates the mount point for a bind at `path` (relative to the new root, no `.`/`..`), with its missing
/// parents: a directory when `directory`, else an empty file. Every existing component is opened with
/// O_NOFOLLOW, so a bind can never be steered through a symlink (such as /bin -> usr/bin) onto the host.
static void csandbox_make_mount_point(const char *step, const char *path, bool directory) {
    char copy[PATH_MAX];
    if (snprintf(copy, sizeof copy, "%s", path) >= (int)sizeof copy) {
        csandbox_fail(step, ENAMETOOLONG, "%s", path);
    }
    int parent = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (parent < 0) {
        csandbox_fail(step, errno, "open the new root");
    }
    char *component = copy;
    char *slash;
    while ((slash = strchr(component, '/')) != NULL) {
        *slash = '\0';
        if (mkdirat(parent, component, 0755) < 0 && errno != EEXIST) {
            csandbox_fail(step, errno, "mkdir %s of %s", component, path);
        }
        int child = openat(parent, component, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (child < 0) {
            csandbox_fail(step, errno, "%s of %s is not a plain directory", component, path);
        }
        (void)close(parent);
        parent = child;
        component = slash + 1;
    }
    if (directory) {
        if (mkdirat(parent, component, 0755) < 0 && errno != EEXIST) {
            csandbox_fail(step, errno, "mkdir %s", path);
        }
        struct stat status;
        if (fstatat(parent, component, &status, AT_SYMLINK_NOFOLLOW) < 0) {
            csandbox_fail(step, errno, "stat %s", path);
        }
        if (!S_ISDIR(status.st_mode)) {
            csandbox_fail(step, ENOTDIR, "%s already exists and is not a directory", path);
        }
    } else {
        int fd = openat(parent, component, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0444);
        if (fd < 0) {
            csandbox_fail(step, errno, "create %s", path);
        }
        (void)close(fd);
    }
    (void)close(parent);
}

/// Binds `source` onto `target` (a path relative to the new root, created here) and makes it read-only.
static void csandbox_bind_readonly(const char *step, const char *source, const char *target, bool directory) {
    csandbox_make_mount_point(step, target, directory);
    if (mount(source, target, NULL, MS_BIND | MS_REC, NULL) < 0) {
        csandbox_fail(step, errno, "bind %s on %s", source, target);
    }
    if (csandbox_restrict_mount(target, true, true) < 0) {
        csandbox_fail(step, errno, "make %s read-only", target);
    }
}

/// The directories an ordinary program expects at the top. On a merged-/usr host (Debian 12, Fedora, Arch)
/// they are symlinks into /usr and are recreated as the same symlinks; otherwise they are bound read-only.
static void csandbox_link_system_directories(void) {
    static const char *const names[] = {"bin", "sbin", "lib", "lib64", "lib32"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char host_path[16];
        snprintf(host_path, sizeof host_path, "/%s", names[i]);
        struct stat status;
        if (lstat(host_path, &status) < 0) {
            if (errno == ENOENT) {
                continue;  // e.g. no /lib32 on most hosts
            }
            csandbox_fail("bind_system", errno, "lstat %s", host_path);
        }
        if (S_ISLNK(status.st_mode)) {
            char target[PATH_MAX];
            ssize_t length = readlink(host_path, target, sizeof target - 1);
            if (length < 0) {
                csandbox_fail("bind_system", errno, "readlink %s", host_path);
            }
            target[length] = '\0';
            if (symlink(target, names[i]) < 0) {
                csandbox_fail("bind_system", errno, "symlink %s -> %s", names[i], target);
            }
        } else if (S_ISDIR(status.st_mode)) {
            csandbox_bind_readonly("bind_system", host_path, names[i], true);
        }
    }
}

/// A minimal generated /etc: enough for `id`, `getent`, `localhost` and the shell, and nothing of the host's
/// (no shadow, no resolv.conf, no machine-id).
static void csandbox_write_etc(const char *hostname) {
    csandbox_make_directory("write_etc", "etc", 0755);
    csandbox_write_file("write_etc", "etc/passwd",
                        "root:x:0:0:root:/tmp:/bin/sh\n"
                        "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n");
    csandbox_write_file("write_etc", "etc/group", "root:x:0:\nnogroup:x:65534:\n");
    char hosts[256];
    snprintf(hosts, sizeof hosts, "127.0.0.1\tlocalhost %s\n::1\tlocalhost ip6-localhost ip6-loopback\n", hostname);
    csandbox_write_file("write_etc", "etc/hosts", hosts);
    char name_line[80];
    snprintf(name_line, sizeof name_line, "%s\n", hostname);
    csandbox_write_file("write_etc", "etc/hostname", name_line);
    csandbox_write_file("write_etc", "etc/nsswitch.conf",
                        "passwd: files\ngroup: files\nshadow: files\nhosts: files\nnetworks: files\n"
                        "protocols: files\nservices: files\n");
    // Debian's /usr/bin/awk, editor, pager and friends are symlinks through /etc/alternatives.
    struct stat status;
    if (stat("/etc/alternatives", &status) == 0 && S_ISDIR(status.st_mode)) {
        csandbox_bind_readonly("bind_alternatives", "/etc/alternatives", "etc/alternatives", true);
    }
}

/// `/proc/self/fd/N`: the mount source for one of the engine's descriptors (after csandbox_adopt_descriptor),
/// so that the mount never walks a path the space's unprivileged id could not traverse (a 0700 /root).
static void csandbox_fd_source(char *buffer, size_t size, int fd) {
    snprintf(buffer, size, "/proc/self/fd/%d", fd);
}

/// Replaces host descriptor `fd` with one for the same file opened again inside this mount namespace.
///
/// The kernel refuses to bind a mount that belongs to another mount namespace (EINVAL), and the engine's
/// descriptors point into the host's. So init, while it still runs as the engine's host id (which could open
/// the path; the space's id may not be able to traverse, say, /root), resolves the descriptor's path here and
/// opens it again, and insists on the same device and inode so a path swapped in the meantime is refused.
static void csandbox_adopt_descriptor(const char *step, int fd) {
    struct stat original;
    if (fstat(fd, &original) < 0) {
        csandbox_fail(step, errno, "descriptor %d", fd);
    }
    char source[32], path[PATH_MAX];
    csandbox_fd_source(source, sizeof source, fd);
    ssize_t length = readlink(source, path, sizeof path - 1);
    if (length < 0) {
        csandbox_fail(step, errno, "readlink %s", source);
    }
    path[length] = '\0';
    if (path[0] != '/') {
        csandbox_fail(step, EINVAL, "descriptor %d is not a file or directory (%s)", fd, path);
    }
    int reopened = open(path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (reopened < 0) {
        csandbox_fail(step, errno, "reopen %s", path);
    }
    struct stat again;
    if (fstat(reopened, &again) < 0) {
        csandbox_fail(step, errno, "stat %s", path);
    }
    if (again.st_dev != original.st_dev || again.st_ino != original.st_ino) {
        csandbox_fail(step, ESTALE, "%s changed since the engine opened it", path);
    }
    if (dup3(reopened, fd, O_CLOEXEC) < 0) {
        csandbox_fail(step, errno, "dup3 onto %d", fd);
    }
    (void)close(reopened);
}

void csandbox_adopt_host_descriptors(const struct csandbox_options *options) {
    csandbox_adopt_descriptor("bind_workspace", options->workspace_fd);
    for (size_t i = 0; i < options->bind_count; i++) {
        csandbox_adopt_descriptor("bind_ro", options->binds[i].fd);
    }
}

/// The engine's read-only binds: the Bun binary, the worker script.
static void csandbox_bind_descriptors(const struct csandbox_options *options) {
    for (size_t i = 0; i < options->bind_count; i++) {
        const struct csandbox_bind *bind = &options->binds[i];
        struct stat status;
        if (fstat(bind->fd, &status) < 0) {
            csandbox_fail("bind_ro", errno, "descriptor %d for %s", bind->fd, bind->inside_path);
        }
        char source[32];
        csandbox_fd_source(source, sizeof source, bind->fd);
        csandbox_bind_readonly("bind_ro", source, bind->inside_path + 1, S_ISDIR(status.st_mode));
        (void)close(bind->fd);
    }
}

/// The workspace, read-write, at /workspace. Owned on the host by the space's mapped id.
static void csandbox_bind_workspace(int workspace_fd) {
    struct stat status;
    if (fstat(workspace_fd, &status) < 0) {
        csandbox_fail("bind_workspace", errno, "workspace descriptor %d", workspace_fd);
    }
    if (!S_ISDIR(status.st_mode)) {
        csandbox_fail("bind_workspace", ENOTDIR, "workspace descriptor %d is not a directory", workspace_fd);
    }
    char source[32];
    csandbox_fd_source(source, sizeof source, workspace_fd);
    csandbox_make_directory("bind_workspace", "workspace", 0755);
    if (mount(source, "workspace", NULL, MS_BIND | MS_REC, NULL) < 0) {
        csandbox_fail("bind_workspace", errno, "bind workspace descriptor %d", workspace_fd);
    }
    if (csandbox_restrict_mount("workspace", true, false) < 0) {
        csandbox_fail("bind_workspace", errno, "make /workspace nosuid,nodev");
    }
    (void)close(workspace_fd);
}

/// Mounts a size-capped tmpfs at `path` with `mode` (1777 for the shared scratch directories).
static void csandbox_mount_tmpfs(const char *step, const char *path, const char *mode, unsigned long long size,
                                 unsigned long flags) {
    csandbox_make_directory(step, path, 0755);
    char data[64];
    snprintf(data, sizeof data, "mode=%s,size=%llu", mode, size);
    if (mount("tmpfs", path, "tmpfs", flags, data) < 0) {
        csandbox_fail(step, errno, "tmpfs on %s (%s)", path, data);
    }
}

/// A minimal /dev: binds of the harmless host devices (device nodes cannot be created in a user namespace),
/// a private /dev/shm, and the usual links into /proc.
static void csandbox_populate_dev(unsigned long long shm_size) {
    csandbox_mount_tmpfs("mount_dev", "dev", "0755", 64 * 1024, MS_NOSUID | MS_NODEV | MS_NOEXEC);
    static const char *const devices[] = {"null", "zero", "full", "random", "urandom", "tty"};
    for (size_t i = 0; i < sizeof devices / sizeof devices[0]; i++) {
        char host_path[32], inside_path[32];
        snprintf(host_path, sizeof host_path, "/dev/%s", devices[i]);
        snprintf(inside_path, sizeof inside_path, "dev/%s", devices[i]);
        struct stat status;
        if (stat(host_path, &status) < 0) {
            if (errno == ENOENT && strcmp(devices[i], "tty") == 0) {
                continue;  // some minimal containers have no /dev/tty; nothing inside needs it
            }
            csandbox_fail("bind_dev", errno, "stat %s", host_path);
        }
        int fd = open(inside_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd < 0) {
            csandbox_fail("bind_dev", errno, "create %s", inside_path);
        }
        (void)close(fd);
        // The bind is its own mount with the host devtmpfs's flags, so the nodev on our tmpfs does not apply.
        if (mount(host_path, inside_path, NULL, MS_BIND, NULL) < 0) {
            csandbox_fail("bind_dev", errno, "bind %s", host_path);
        }
    }
    static const char *const links[][2] = {
        {"/proc/self/fd", "dev/fd"},
        {"/proc/self/fd/0", "dev/stdin"},
        {"/proc/self/fd/1", "dev/stdout"},
        {"/proc/self/fd/2", "dev/stderr"},
    };
    for (size_t i = 0; i < sizeof links / sizeof links[0]; i++) {
        if (symlink(links[i][0], links[i][1]) < 0) {
            csandbox_fail("mount_dev", errno, "symlink %s -> %s", links[i][1], links[i][0]);
        }
    }
    csandbox_mount_tmpfs("mount_dev", "dev/shm", "1777", shm_size, MS_NOSUID | MS_NODEV);
    // Only the top mount: the device binds must keep working and /dev/shm must stay writable.
    if (csandbox_restrict_mount("dev", false, true) < 0) {
        csandbox_fail("mount_dev", errno, "make /dev read-only");
    }
}

void csandbox_build_root(const struct csandbox_options *options) {
    // Nothing we mount may propagate back to the host (or to another space).
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
        csandbox_fail("mount_private", errno, "make / private");
    }
    // Small on purpose: it only holds directories, links and the /etc files, and is read-only once done.
    if (mount("tmpfs", csandbox_staging_root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m,nr_inodes=4096") < 0) {
        csandbox_fail("mount_root", errno, "tmpfs on %s", csandbox_staging_root);
    }
    if (chdir(csandbox_staging_root) < 0) {
        csandbox_fail("mount_root", errno, "chdir %s", csandbox_staging_root);
    }
    csandbox_bind_readonly("bind_usr", "/usr", "usr", true);
    csandbox_link_system_directories();
    csandbox_write_etc(options->hostname);
    csandbox_bind_descriptors(options);
    csandbox_bind_workspace(options->workspace_fd);
    csandbox_mount_tmpfs("mount_tmp", "tmp", "1777", options->tmp_size, MS_NOSUID | MS_NODEV);
    csandbox_populate_dev(options->tmp_size);
    // A proc mount is only allowed while a full proc is visible in this mount namespace (the host's, at
    // /proc), so it has to happen before the pivot detaches that one. It shows this pid namespace: init made
    // the call, and init is in it.
    csandbox_make_directory("mount_proc", "proc", 0555);
    if (mount("proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) {
        csandbox_fail("mount_proc", errno, "mount proc");
    }
}

void csandbox_enter_root(void) {
    // pivot_root(".", ".") stacks the old root on top of the new one at "/", and detaching "." then removes
    // exactly that old root: no directory for it is needed in the new tree (pivot_root(2), NOTES).
    if (syscall(SYS_pivot_root, ".", ".") < 0) {
        csandbox_fail("pivot_root", errno, "pivot into the new root");
    }
    if (umount2(".", MNT_DETACH) < 0) {
        csandbox_fail("umount_old_root", errno, "detach the host's root");
    }
    if (chdir("/") < 0) {
        csandbox_fail("pivot_root", errno, "chdir /");
    }
    if (mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) < 0) {
        csandbox_fail("remount_root", errno, "make / read-only");
    }
}
