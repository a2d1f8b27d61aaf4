// init, pid 1 of a space (docs/SANDBOX.md, "Process tree"). It exists because a pid namespace needs a first
// process that reaps orphans and whose exit ends everything in it; doing the set-up here as well means every
// mount, the hostname and the loopback belong to the space's namespaces and nothing in the engine changes.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "csandbox_internal.h"

/// The worker's descriptors: stdin, stdout, stderr, requests, responses (docs/WORKER.md).
#define CSANDBOX_REQUEST_FD 3
#define CSANDBOX_RESPONSE_FD 4

/// The shell convention for a process's status as one exit code: its own code, or 128 + the killing signal.
static int csandbox_exit_code(int status) {
    if (WIFEXITED(status)) {
        return WEXITSTATUS(status);
    }
    if (WIFSIGNALED(status)) {
        return 128 + WTERMSIG(status);
    }
    return CSANDBOX_EXIT_SETUP_FAILED;
}

/// A new network namespace has only `lo`, and it starts down; bring it up so 127.0.0.1 works inside.
static void csandbox_bring_up_loopback(void) {
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        csandbox_fail("loopback", errno, "socket");
    }
    struct ifreq request;
    memset(&request, 0, sizeof request);
    strncpy(request.ifr_name, "lo", IFNAMSIZ - 1);
    if (ioctl(fd, SIOCGIFFLAGS, &request) < 0) {
        csandbox_fail("loopback", errno, "SIOCGIFFLAGS lo");
    }
    request.ifr_flags |= IFF_UP | IFF_RUNNING;
    if (ioctl(fd, SIOCSIFFLAGS, &request) < 0) {
        csandbox_fail("loopback", errno, "SIOCSIFFLAGS lo up");
    }
    (void)close(fd);
}

/// Waits for the monitor to write the id maps. One byte means go; end-of-file means the monitor failed (and
/// has reported why) or died, and init leaves quietly.
static void csandbox_wait_for_release(int release_fd) {
    char byte;
    ssize_t count;
    do {
        count = read(release_fd, &byte, 1);
    } while (count < 0 && errno == EINTR);
    if (count != 1) {
        _exit(CSANDBOX_EXIT_SETUP_FAILED);
    }
}

/// Becomes the space's root (the mapped host id) and ties init's life to the monitor's.
static void csandbox_become_space_root(int release_fd) {
    // Until now init runs as the engine's host id, which the maps may not cover (host root is never mapped).
    // Switching makes new files, tmpfs roots and the worker belong to the space's id.
    if (setresgid(0, 0, 0) < 0) {
        csandbox_fail("setgid", errno, "setresgid 0 inside the space");
    }
    if (setresuid(0, 0, 0) < 0) {
        csandbox_fail("setuid", errno, "setresuid 0 inside the space");
    }
    // After the id change: changing credentials clears the parent-death signal.
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0) {
        csandbox_fail("pdeathsig", errno, "PR_SET_PDEATHSIG");
    }
    // Nothing in the space may ptrace init or take its descriptors (the lifeline) through /proc/1: as
    // non-dumpable, init's /proc files belong to the host's root, which is not mapped into the space. The
    // worker's exec makes it dumpable again. (Needed when the engine is not root: then the id switch above
    // changes nothing and leaves init dumpable.)
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) {
        csandbox_fail("dumpable", errno, "PR_SET_DUMPABLE 0");
    }
    // The monitor holds the release pipe's write end for its whole life, so a hang-up here means it died
    // before the parent-death signal was armed, and nobody would ever kill this space.
    struct pollfd monitor = {.fd = release_fd, .events = 0};
    if (poll(&monitor, 1, 0) < 0) {
        csandbox_fail("pdeathsig", errno, "poll the release pipe");
    }
    if (monitor.revents & (POLLHUP | POLLERR)) {
        _exit(CSANDBOX_EXIT_SETUP_FAILED);
    }
    (void)close(release_fd);
}

/// In the forked worker: hand over exactly fds 0-4, a clean signal mask and the given environment, and exec.
static _Noreturn void csandbox_exec_worker(const struct csandbox_options *options, int seccomp_fd) {
    sigset_t none;
    sigemptyset(&none);
    if (sigprocmask(SIG_SETMASK, &none, NULL) < 0) {
        csandbox_fail("exec", errno, "reset the signal mask");
    }
    // Close-on-exec rather than close: the status pipe must stay open to report a failed exec, and vanish
    // with a successful one. This also covers the lifeline, the signalfd and anything init inherited.
    if (csandbox_cloexec_from(CSANDBOX_FIRST_EXTRA_FD) < 0) {
        csandbox_fail("exec", errno, "mark descriptors close-on-exec");
    }
    // The confinement layers, in order (docs/SANDBOX.md, "Confinement"): limits while lowering them is still
    // all that is allowed, then no capabilities, then the filter, last because it would refuse the steps before
    // it. no_new_privs, which the filter needs, was set by init.
    csandbox_apply_rlimits(options);
    csandbox_drop_capabilities();
    const char *what;
    int err = csandbox_install_seccomp(seccomp_fd, &what);
    if (err != 0) {
        csandbox_fail("seccomp", err, "%s", what);
    }
    execve(options->program[0], options->program, options->environment);
    csandbox_fail("exec", errno, "%s", options->program[0]);
}

/// init's life after the worker starts: reap every process reparented to it, and end the space when the
/// worker exits (with its status), when the lifeline reaches end-of-file, or on SIGTERM/SIGINT. Returning
/// from pid 1 makes the kernel kill everything else in the namespace.
static _Noreturn void csandbox_supervise(pid_t worker, int signal_fd, int lifeline_fd) {
    while (true) {
        struct pollfd watched[2] = {
            {.fd = signal_fd, .events = POLLIN},
            {.fd = lifeline_fd, .events = POLLIN},
        };
        if (poll(watched, 2, -1) < 0) {
            if (errno == EINTR) {
                continue;
            }
            csandbox_fail("supervise", errno, "poll");
        }
        if (watched[1].revents != 0) {
            char discard[64];
            ssize_t count = read(lifeline_fd, discard, sizeof discard);
            if (count == 0 || (count < 0 && errno != EINTR && errno != EAGAIN)) {
                _exit(128 + SIGKILL);  // the engine is gone or closed the space
            }
        }
        if (watched[0].revents & POLLIN) {
            struct signalfd_siginfo signal_info;
            ssize_t count = read(signal_fd, &signal_info, sizeof signal_info);
            if (count < 0 && errno != EINTR && errno != EAGAIN) {
                csandbox_fail("supervise", errno, "read signalfd");
            }
            if (count == (ssize_t)sizeof signal_info && signal_info.ssi_signo != SIGCHLD) {
                _exit(128 + (int)signal_info.ssi_signo);
            }
            // SIGCHLD (several may have merged into one): reap everything that has exited.
            int status;
            pid_t reaped;
            while ((reaped = waitpid(-1, &status, WNOHANG)) > 0) {
                if (reaped == worker) {
                    _exit(csandbox_exit_code(status));
                }
            }
        }
    }
}

void csandbox_run_init(const struct csandbox_options *options, struct csandbox_init_handoff handoff) {
    // First of all, so that init and everything it will start are counted and limited from the start.
    csandbox_cgroups_join(handoff.cgroups);
    csandbox_cgroups_report(handoff.cgroups, options->status_fd);
    int release_fd = handoff.release_fd;
    int seccomp_fd = handoff.seccomp_fd;
    // Still the engine's host id and already in the new mount namespace: the one moment the engine's
    // descriptors can be reopened both with the engine's access and as mounts of this namespace.
    csandbox_adopt_host_descriptors(options);
    csandbox_wait_for_release(release_fd);
    csandbox_become_space_root(release_fd);
    // init is in the space's cgroups by now: a cgroup namespace made here has the space's cgroup as its root,
    // so /proc/self/cgroup inside shows `/` and nothing of the host's hierarchy.
    if (unshare(CLONE_NEWCGROUP) < 0) {
        csandbox_fail("cgroupns", errno, "unshare the cgroup namespace");
    }
    umask(022);
    csandbox_bring_up_loopback();
    if (sethostname(options->hostname, strlen(options->hostname)) < 0) {
        csandbox_fail("hostname", errno, "sethostname %s", options->hostname);
    }
    csandbox_build_root(options);
    csandbox_enter_root();
    if (chdir(options->cwd) < 0) {
        csandbox_fail("chdir", errno, "%s", options->cwd);
    }
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
        csandbox_fail("no_new_privs", errno, "PR_SET_NO_NEW_PRIVS");
    }
    // A session of its own: no terminal of the engine's reaches into the space.
    if (setsid() < 0) {
        csandbox_fail("setsid", errno, "setsid");
    }

    // Blocked before the fork so that no SIGCHLD is lost, and read through a signalfd so that init needs no
    // handlers. Blocked signals also reach pid 1, which would otherwise ignore a SIGTERM it has no handler for.
    sigset_t watched;
    sigemptyset(&watched);
    sigaddset(&watched, SIGCHLD);
    sigaddset(&watched, SIGTERM);
    sigaddset(&watched, SIGINT);
    if (sigprocmask(SIG_BLOCK, &watched, NULL) < 0) {
        csandbox_fail("signals", errno, "block signals");
    }
    int signal_fd = signalfd(-1, &watched, SFD_CLOEXEC | SFD_NONBLOCK);
    if (signal_fd < 0) {
        csandbox_fail("signals", errno, "signalfd");
    }

    pid_t worker = fork();
    if (worker < 0) {
        csandbox_fail("fork_worker", errno, "fork");
    }
    if (worker == 0) {
        csandbox_exec_worker(options, seccomp_fd);
    }
    (void)close(seccomp_fd);
    // The worker's exec (or its failure report) now decides what the engine reads on the status pipe, and the
    // worker must be the only one holding the request and response pipes.
    (void)close(options->status_fd);
    csandbox_set_status_fd(-1);
    (void)close(CSANDBOX_REQUEST_FD);
    (void)close(CSANDBOX_RESPONSE_FD);
    // Reaping and exiting need no privilege: init keeps no capability the space's code could borrow.
    csandbox_drop_capabilities();
    csandbox_supervise(worker, signal_fd, options->lifeline_fd);
}
