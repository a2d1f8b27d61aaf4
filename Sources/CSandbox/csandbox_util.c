// Small wrappers over system calls the launcher needs but that libc either lacks on older releases
// (close_range, mount_setattr: glibc 2.34 / 2.36) or wraps with a less useful shape. Each has a fallback for
// kernels without the call, so the launcher runs on any kernel that has user namespaces.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "csandbox_internal.h"

// Syscall numbers are the same on every architecture for calls added after 5.0.
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif

/// `CLOSE_RANGE_CLOEXEC` from <linux/close_range.h> (Linux 5.11).
#define CSANDBOX_CLOSE_RANGE_CLOEXEC (1U << 2)

/// `struct mount_attr` from <linux/mount.h>, under our own name: glibc 2.36's <sys/mount.h> declares the same
/// struct and the two headers cannot both be included.
struct csandbox_mount_attr {
    uint64_t attr_set;
    uint64_t attr_clr;
    uint64_t propagation;
    uint64_t userns_fd;
};
#define CSANDBOX_MOUNT_ATTR_RDONLY 0x00000001ULL
#define CSANDBOX_MOUNT_ATTR_NOSUID 0x00000002ULL
#define CSANDBOX_MOUNT_ATTR_NODEV 0x00000004ULL
#define CSANDBOX_AT_RECURSIVE 0x8000

int csandbox_write_all(int fd, const void *buffer, size_t length) {
    const char *bytes = buffer;
    while (length > 0) {
        ssize_t written = write(fd, bytes, length);
        if (written < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -1;
        }
        bytes += written;
        length -= (size_t)written;
    }
    return 0;
}

/// Closes (or, with `set_cloexec`, marks close-on-exec) every open descriptor >= `first` that is not in `keep`,
/// listing them from /proc/self/fd: the fallback for kernels before close_range (5.9) or its CLOEXEC flag (5.11).
static int csandbox_each_open_fd(int first, const int *keep, size_t keep_count, bool set_cloexec) {
    DIR *directory = opendir("/proc/self/fd");
    if (directory == NULL) {
        return -1;
    }
    int listing_fd = dirfd(directory);
    struct dirent *entry;
    while ((entry = readdir(directory)) != NULL) {
        char *end;
        long fd = strtol(entry->d_name, &end, 10);
        if (*end != '\0' || end == entry->d_name || fd < first || fd == listing_fd) {
            continue;
        }
        bool kept = false;
        for (size_t i = 0; i < keep_count; i++) {
            kept = kept || keep[i] == fd;
        }
        if (kept) {
            continue;
        }
        if (set_cloexec) {
            if (fcntl((int)fd, F_SETFD, FD_CLOEXEC) < 0) {
                int saved = errno;
                closedir(directory);
                errno = saved;
                return -1;
            }
        } else {
            (void)close((int)fd);  // close(2) releases the descriptor even when it reports an error
        }
    }
    closedir(directory);
    return 0;
}

int csandbox_cloexec_from(int first) {
    if (syscall(SYS_close_range, (unsigned)first, ~0U, CSANDBOX_CLOSE_RANGE_CLOEXEC) == 0) {
        return 0;
    }
    if (errno != ENOSYS && errno != EINVAL) {
        return -1;
    }
    return csandbox_each_open_fd(first, NULL, 0, true);
}

int csandbox_close_unlisted(const int *keep, size_t keep_count) {
    // Sort a copy (insertion sort: a handful of entries) and close each gap between kept descriptors.
    int sorted[keep_count + 1];
    size_t count = 0;
    for (size_t i = 0; i < keep_count; i++) {
        if (keep[i] < CSANDBOX_FIRST_EXTRA_FD) {
            continue;
        }
        size_t j = count++;
        while (j > 0 && sorted[j - 1] > keep[i]) {
            sorted[j] = sorted[j - 1];
            j--;
        }
        sorted[j] = keep[i];
    }
    unsigned next = CSANDBOX_FIRST_EXTRA_FD;
    for (size_t i = 0; i <= count; i++) {
        unsigned last = i < count ? (unsigned)sorted[i] - 1 : ~0U;
        if (i < count && (unsigned)sorted[i] < next) {
            continue;  // a duplicate
        }
        if (last >= next && syscall(SYS_close_range, next, last, 0U) < 0) {
            if (errno != ENOSYS) {
                return -1;
            }
            return csandbox_each_open_fd(CSANDBOX_FIRST_EXTRA_FD, keep, keep_count, false);
        }
        if (i < count) {
            next = (unsigned)sorted[i] + 1;
        }
    }
    return 0;
}

int csandbox_restrict_mount(const char *path, bool recursive, bool read_only) {
    struct csandbox_mount_attr attributes = {
        .attr_set = CSANDBOX_MOUNT_ATTR_NOSUID | CSANDBOX_MOUNT_ATTR_NODEV
            | (read_only ? CSANDBOX_MOUNT_ATTR_RDONLY : 0),
    };
    unsigned flags = recursive ? CSANDBOX_AT_RECURSIVE : 0;
    if (syscall(SYS_mount_setattr, AT_FDCWD, path, flags, &attributes, sizeof attributes) == 0) {
        return 0;
    }
    if (errno != ENOSYS) {
        return -1;
    }
    // Before Linux 5.12: a bind remount changes only the top mount, and it must repeat every flag the kernel
    // locked when the mount was copied into this user namespace, or it fails with EPERM.
    struct statvfs status;
    if (statvfs(path, &status) < 0) {
        return -1;
    }
    static const struct {
        unsigned long statvfs_flag;
        unsigned long mount_flag;
    } locked[] = {
        {ST_NOSUID, MS_NOSUID}, {ST_NODEV, MS_NODEV}, {ST_NOEXEC, MS_NOEXEC},
        {ST_NOATIME, MS_NOATIME}, {ST_NODIRATIME, MS_NODIRATIME}, {ST_RELATIME, MS_RELATIME},
    };
    unsigned long mount_flags = MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV | (read_only ? MS_RDONLY : 0);
    for (size_t i = 0; i < sizeof locked / sizeof locked[0]; i++) {
        if (status.f_flag & locked[i].statvfs_flag) {
            mount_flags |= locked[i].mount_flag;
        }
    }
    return mount(NULL, path, NULL, mount_flags, NULL);
}
