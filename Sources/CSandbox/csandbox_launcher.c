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
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "csandbox.h"
#include "csandbox_internal.h"

/// The namespaces init is cloned into. CLONE_NEWUSER comes first in the kernel's order, so the others are owned
/// by the new user namespace and an unprivileged engine may create them too. The cgroup namespace is missing on
/// purpose: init unshares it once it has joined the space's cgroups, so that its root is the space's own cgroup
/// rather than the engine's.
#define CSANDBOX_NAMESPACES (CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS)

/// init's stack. clone(2) without CLONE_VM gives the child its own copy of this memory, so a static buffer is
/// enough; it is untouched (and costs nothing) in the monitor.
static char csandbox_init_stack[512 * 1024] __attribute__((aligned(16)));

struct csandbox_init_arguments {
    struct csandbox_options *options;
    int argc;
    char **argv;
    struct csandbox_init_handoff handoff;
    int release_write_fd;
    int seccomp_write_fd;
    int log_read_fd;
    int log_write_fd;
};

/// Makes init's /proc/1/cmdline, which the space can read, say only `spaces-launcher`: init starts as a copy of
/// the monitor, whose command line names the launcher's host path and every option. The strings the options
/// point into move to the heap first. (Shrinking the region would need CAP_SYS_RESOURCE on the host, so the
/// rest of it reads as NUL bytes.)
static void csandbox_hide_command_line(struct csandbox_options *options, int argc, char **argv) {
    char *start = argv[0];
    char *end = argv[argc - 1] + strlen(argv[argc - 1]) + 1;
    for (int i = 1; i < argc; i++) {
        if (argv[i] != argv[i - 1] + strlen(argv[i - 1]) + 1) {
            return;  // not the kernel's contiguous layout: leave it alone rather than guess
        }
    }
    size_t length = (size_t)(end - start);
    char *copy = malloc(length);
    if (copy == NULL) {
        csandbox_fail("clone", ENOMEM, "copy the command line");
    }
    memcpy(copy, start, length);
#define CSANDBOX_REBASE(pointer)                                                                                   \
    do {                                                                                                           \
        if ((pointer) != NULL && (pointer) >= start && (pointer) < end) {                                          \
            (pointer) = copy + ((pointer) - start);                                                                \
        }                                                                                                          \
    } while (0)
    for (int i = 0; i < argc; i++) {
        CSANDBOX_REBASE(argv[i]);  // options->program points into argv itself
    }
    for (char **variable = options->environment; *variable != NULL; variable++) {
        CSANDBOX_REBASE(*variable);
    }
    for (size_t i = 0; i < options->bind_count; i++) {
        CSANDBOX_REBASE(options->binds[i].inside_path);
    }
    CSANDBOX_REBASE(options->hostname);
    CSANDBOX_REBASE(options->cwd);
    CSANDBOX_REBASE(options->cgroup_name);
#undef CSANDBOX_REBASE
    memset(start, 0, length);
    static const char name[] = "spaces-launcher";
    memcpy(start, name, length < sizeof name ? length - 1 : sizeof name - 1);
}

static int csandbox_init_entry(void *argument) {
    const struct csandbox_init_arguments *arguments = argument;
    // Only the monitor may hold the write ends: init detects the monitor's death by the release pipe's hang-up,
    // and the worker the end of the filter by the seccomp pipe's.
    (void)close(arguments->release_write_fd);
    if (arguments->seccomp_write_fd >= 0) {
        (void)close(arguments->seccomp_write_fd);
    }
    // stdout and stderr of everything in the space are the log pipe to the monitor, never the engine's own
    // stderr: through /proc/self/fd/2 a process could reopen that (a log file, or the read side of a pipe).
    if (dup2(arguments->log_write_fd, STDOUT_FILENO) < 0 || dup2(arguments->log_write_fd, STDERR_FILENO) < 0) {
        csandbox_fail("clone", errno, "log pipe on stdout and stderr");
    }
    (void)close(arguments->log_write_fd);
    (void)close(arguments->log_read_fd);
    csandbox_hide_command_line(arguments->options, arguments->argc, arguments->argv);
    csandbox_run_init(arguments->options, arguments->handoff);
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

/// Copies what the space writes to its stdout and stderr to the monitor's stderr (the engine's) until every
/// process of the space has closed them, which happens at the latest when the last one has died. A SIGTERM
/// (EINTR) only interrupts one read.
static void csandbox_relay_log(int log_fd) {
    char buffer[16384];
    while (true) {
        ssize_t count = read(log_fd, buffer, sizeof buffer);
        if (count > 0) {
            (void)csandbox_write_all(STDERR_FILENO, buffer, (size_t)count);  // a log line lost is no reason to stop
        } else if (count == 0 || errno != EINTR) {
            break;
        }
    }
    (void)close(log_fd);
}

/// The space's cgroups. Static because they are large for a stack; init gets a copy with the monitor's memory.
static struct csandbox_cgroups csandbox_space_cgroups;

/// Kills init after a failed set-up step, waits until the space is empty, and removes its cgroups.
static int csandbox_abandon_space(pid_t init) {
    (void)kill(init, SIGKILL);
    (void)csandbox_wait_exit_code(init);
    csandbox_cgroups_remove(&csandbox_space_cgroups);
    return CSANDBOX_EXIT_SETUP_FAILED;
}

int csandbox_launcher_main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "--probe") == 0) {
        return csandbox_probe_main();
    }
    if (argc == 2 && strcmp(argv[1], "--export-seccomp") == 0) {
        return csandbox_export_seccomp_main();
    }
    struct csandbox_options options;
    csandbox_parse_options(argc, argv, &options);

    // Nothing the engine leaked without close-on-exec may reach the space: keep only what we were told about.
    int keep[options.bind_count + 4];
    size_t keep_count = 0;
    keep[keep_count++] = options.status_fd;
    keep[keep_count++] = options.seccomp_fd;
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

    // Until init exists, SIGTERM has nothing to forward to and only must not kill the monitor between making
    // the cgroups and removing them. Writing to a pipe whose reader (init) SIGTERM already killed must fail with
    // EPIPE rather than kill the monitor for the same reason.
    struct sigaction termination = {.sa_handler = csandbox_forward_termination};
    sigemptyset(&termination.sa_mask);
    if (sigaction(SIGTERM, &termination, NULL) < 0 || signal(SIGPIPE, SIG_IGN) == SIG_ERR) {
        csandbox_fail("clone", errno, "SIGTERM and SIGPIPE handling");
    }
    int release[2];
    if (pipe2(release, O_CLOEXEC) < 0) {
        csandbox_fail("clone", errno, "release pipe");
    }
    // The worker's filter: handed over ready-made by the engine, or compiled by the monitor (below).
    int seccomp_pipe[2] = {options.seccomp_fd, -1};
    if (options.seccomp_fd < 0 && pipe2(seccomp_pipe, O_CLOEXEC) < 0) {
        csandbox_fail("clone", errno, "seccomp pipe");
    }
    // What the space writes to stdout and stderr, relayed to the engine's stderr by the monitor (below).
    int log_pipe[2];
    if (pipe2(log_pipe, O_CLOEXEC) < 0) {
        csandbox_fail("clone", errno, "log pipe");
    }
    // Made before init exists, so that init can join them itself, cheaply, as its first step (see
    // csandbox_cgroup.c); what works is reported by init, before the worker's exec closes the status pipe.
    csandbox_cgroups_create(&csandbox_space_cgroups, options.cgroup_name, options.memory_bytes, options.pids_max,
                            options.cpu_millis);
    struct csandbox_init_arguments arguments = {
        .options = &options,
        .argc = argc,
        .argv = argv,
        .log_read_fd = log_pipe[0],
        .log_write_fd = log_pipe[1],
        .handoff = {.release_fd = release[0], .seccomp_fd = seccomp_pipe[0], .cgroups = &csandbox_space_cgroups},
        .release_write_fd = release[1],
        .seccomp_write_fd = seccomp_pipe[1],
    };
    pid_t init = clone(csandbox_init_entry, csandbox_init_stack + sizeof csandbox_init_stack,
                       CSANDBOX_NAMESPACES | SIGCHLD, &arguments);
    if (init < 0) {
        int err = errno;
        csandbox_cgroups_remove(&csandbox_space_cgroups);
        csandbox_fail("clone", err, "new user, pid, mount, net, ipc and uts namespaces");
    }
    csandbox_init_pid = init;
    csandbox_cgroups_close_join_files(&csandbox_space_cgroups);
    (void)close(release[0]);
    (void)close(seccomp_pipe[0]);
    (void)close(log_pipe[1]);
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
        return csandbox_abandon_space(init);
    }
    if (csandbox_write_all(release[1], "1", 1) < 0) {
        csandbox_report("clone", errno, "release init");
        return csandbox_abandon_space(init);
    }
    // Without --seccomp-fd the filter is compiled here, while init builds the root. It costs ~0.2 ms of CPU,
    // and init, woken by the release, often shares this CPU, so the engine's ready-made program is faster. A
    // failure needs no report of its own: the worker then finds no complete filter on the pipe and fails at
    // step `seccomp` (and if init already failed, its report is the one that matters).
    if (seccomp_pipe[1] >= 0) {
        const char *what;
        (void)csandbox_export_seccomp(seccomp_pipe[1], &what);
        (void)close(seccomp_pipe[1]);
    }
    // From here init and the worker report their own failures; the lifeline is init's to watch. release[1]
    // stays open until the monitor exits (see csandbox_become_space_root).
    (void)close(options.status_fd);
    (void)close(options.lifeline_fd);
    csandbox_set_status_fd(-1);
    csandbox_relay_log(log_pipe[0]);
    int code = csandbox_wait_exit_code(init);
    // The pid namespace is empty now, so the cgroups are too.
    csandbox_cgroups_remove(&csandbox_space_cgroups);
    return code;
}
