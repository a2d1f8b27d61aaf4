// The monitor: the launcher process the engine spawns, in the host's namespaces. It exists because a new user
// namespace's id maps must be written from outside it, and because the engine needs one host-side process
// whose exit means "this space is completely gone" (docs/SANDBOX.md, "Process tree").
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "csandbox.h"
#include "csandbox_internal.h"

/// Every namespace a space gets. CLONE_NEWUSER comes first in the kernel's order, so the others are owned by
/// the new user namespace and an unprivileged engine may create them too.
#define CSANDBOX_NAMESPACES \
    (CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP)

/// init's stack. clone(2) without CLONE_VM gives the child its own copy of this memory, so a static buffer is
/// enough; it is untouched (and costs nothing) in the monitor.
static char csandbox_init_stack[512 * 1024] __attribute__((aligned(16)));

struct csandbox_init_arguments {
    const struct csandbox_options *options;
    int release_read_fd;
    int release_write_fd;
};

static int csandbox_init_entry(void *argument) {
    const struct csandbox_init_arguments *arguments = argument;
    // Only the monitor may hold the write end: init detects the monitor's death by its hang-up.
    (void)close(arguments->release_write_fd);
    csandbox_run_init(arguments->options, arguments->release_read_fd);
}

/// init's host pid, for the SIGTERM handler; 0 until clone returns.
static volatile pid_t csandbox_init_pid;

/// SIGTERM (sent by the engine's kill) ends the space through init: SIGKILL to init makes the kernel kill the
/// whole pid namespace, and the monitor keeps waiting, so its own exit still means the namespace is empty.
/// Dying here instead would let the engine reap the monitor while the space is still being torn down.
static void csandbox_forward_termination(int signal_number) {
    (void)signal_number;
    int saved = errno;
    if (csandbox_init_pid > 0) {
        (void)kill(csandbox_init_pid, SIGKILL);
    }
    errno = saved;
}

/// Writes `contents` to /proc/PID/`file`. Returns 0, or an errno value.
static int csandbox_write_proc_file(int proc_fd, const char *file, const char *contents) {
    int fd = openat(proc_fd, file, O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
        return errno;
    }
    int result = csandbox_write_all(fd, contents, strlen(contents)) < 0 ? errno : 0;
    if (close(fd) < 0 && result == 0) {
        result = errno;
    }
    return result;
}

/// Maps the space's root to the one host id it runs as: `0 <uid> 1` and `0 <gid> 1`, with setgroups denied
/// (required before an unprivileged gid_map, and it keeps the space from dropping groups to dodge a
/// group-denied permission). Returns the failed step and sets `*err`, or NULL.
static const char *csandbox_write_id_maps(pid_t init, const struct csandbox_options *options, int *err) {
    char path[32];
    snprintf(path, sizeof path, "/proc/%d", (int)init);
    int proc_fd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (proc_fd < 0) {
        *err = errno;
        return "uid_map";
    }
    char line[32];
    const char *failed = NULL;
    snprintf(line, sizeof line, "0 %u 1\n", (unsigned)options->uid);
    if ((*err = csandbox_write_proc_file(proc_fd, "uid_map", line)) != 0) {
        failed = "uid_map";
    } else if ((*err = csandbox_write_proc_file(proc_fd, "setgroups", "deny")) != 0) {
        failed = "setgroups";
    } else {
        snprintf(line, sizeof line, "0 %u 1\n", (unsigned)options->gid);
        if ((*err = csandbox_write_proc_file(proc_fd, "gid_map", line)) != 0) {
            failed = "gid_map";
        }
    }
    (void)close(proc_fd);
    return failed;
}

/// Waits for `pid` and returns its status as one exit code (128 + signal when it was killed).
static int csandbox_wait_exit_code(pid_t pid) {
    int status;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            return CSANDBOX_EXIT_SETUP_FAILED;
        }
    }
    return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
}

int csandbox_launcher_main(int argc, char **argv) {
    struct csandbox_options options;
    csandbox_parse_options(argc, argv, &options);

    // Nothing the engine leaked without close-on-exec may reach the space: keep only what we were told about.
    int keep[options.bind_count + 3];
    size_t keep_count = 0;
    keep[keep_count++] = options.status_fd;
    keep[keep_count++] = options.lifeline_fd;
    keep[keep_count++] = options.workspace_fd;
    for (size_t i = 0; i < options.bind_count; i++) {
        keep[keep_count++] = options.binds[i].fd;
    }
    if (csandbox_close_unlisted(keep, keep_count) < 0) {
        csandbox_fail("close_fds", errno, "close inherited descriptors");
    }
    // Host root's supplementary groups would follow init into the space (setgroups is denied there).
    if (geteuid() == 0 && setgroups(0, NULL) < 0) {
        csandbox_fail("drop_groups", errno, "drop supplementary groups");
    }

    int release[2];
    if (pipe2(release, O_CLOEXEC) < 0) {
        csandbox_fail("clone", errno, "release pipe");
    }
    struct csandbox_init_arguments arguments = {
        .options = &options,
        .release_read_fd = release[0],
        .release_write_fd = release[1],
    };
    pid_t init = clone(csandbox_init_entry, csandbox_init_stack + sizeof csandbox_init_stack,
                       CSANDBOX_NAMESPACES | SIGCHLD, &arguments);
    if (init < 0) {
        csandbox_fail("clone", errno, "new user, pid, mount, net, ipc, uts and cgroup namespaces");
    }
    csandbox_init_pid = init;
    struct sigaction termination = {.sa_handler = csandbox_forward_termination};
    sigemptyset(&termination.sa_mask);
    if (sigaction(SIGTERM, &termination, NULL) < 0) {
        int err = errno;
        (void)kill(init, SIGKILL);
        (void)csandbox_wait_exit_code(init);
        csandbox_fail("clone", err, "SIGTERM handler");
    }
    (void)close(release[0]);
    // Those belong to init and the worker now; the monitor keeps only stdout/stderr, status and lifeline.
    (void)close(STDIN_FILENO);
    (void)close(3);
    (void)close(4);
    (void)close(options.workspace_fd);
    for (size_t i = 0; i < options.bind_count; i++) {
        (void)close(options.binds[i].fd);
    }

    int err = 0;
    const char *failed_step = csandbox_write_id_maps(init, &options, &err);
    if (failed_step != NULL) {
        csandbox_report(failed_step, err, "map space root to host id %u/%u", (unsigned)options.uid,
                        (unsigned)options.gid);
        (void)kill(init, SIGKILL);
        (void)csandbox_wait_exit_code(init);
        return CSANDBOX_EXIT_SETUP_FAILED;
    }
    if (csandbox_write_all(release[1], "1", 1) < 0) {
        csandbox_report("clone", errno, "release init");
        (void)kill(init, SIGKILL);
        (void)csandbox_wait_exit_code(init);
        return CSANDBOX_EXIT_SETUP_FAILED;
    }
    // From here init and the worker report their own failures; the lifeline is init's to watch. release[1]
    // stays open until the monitor exits (see csandbox_become_space_root).
    (void)close(options.status_fd);
    (void)close(options.lifeline_fd);
    csandbox_set_status_fd(-1);
    return csandbox_wait_exit_code(init);
}
