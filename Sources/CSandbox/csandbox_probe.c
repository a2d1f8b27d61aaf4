// `spaces-launcher --probe` (docs/SANDBOX.md, "Probing the host"). Some layers can only be known by trying:
// a container's seccomp profile may forbid clone with namespace flags whatever the sysctls say, a filter may fail
// to load, a cgroup directory may be read-only or its controller not delegated. The engine's `probe()` runs this
// once, so that the isolation report says what a space will actually get, without touching the engine itself.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "csandbox_internal.h"

/// The probe child's stack (a copy of this memory, as for init's).
static char csandbox_probe_stack[64 * 1024] __attribute__((aligned(16)));

/// Writes one report line, `<layer> <ok|unavailable> <detail>`, to stdout.
static void csandbox_probe_line(const char *layer, bool ok, const char *detail) {
    char line[1024];
    int length = snprintf(line, sizeof line, "%s %s %s\n", layer, ok ? "ok" : "unavailable",
                          detail[0] != '\0' ? detail : "-");
    if (length > 0 && (size_t)length < sizeof line) {
        (void)csandbox_write_all(STDOUT_FILENO, line, (size_t)length);
    }
}

/// In a child made like init (every namespace) or, without namespaces, a plain fork: what the worker does
/// before its exec — drop every capability, load the filter — and check that the filter denies. A failure is
/// reported as a status line on `status_fd`.
static int csandbox_probe_confinement(void *argument) {
    csandbox_set_status_fd(*(const int *)argument);
    csandbox_drop_capabilities();
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
        csandbox_fail("seccomp", errno, "PR_SET_NO_NEW_PRIVS");
    }
    const char *what;
    int err = csandbox_load_seccomp(&what);
    if (err != 0) {
        csandbox_fail("seccomp", err, "%s", what);
    }
    if (unshare(CLONE_NEWUTS) == 0 || errno != EPERM) {
        csandbox_fail("seccomp", errno, "the loaded filter let unshare through");
    }
    _exit(0);
}

/// Runs csandbox_probe_confinement in a child with `flags` (namespaces, or none) and returns its status line,
/// empty when everything worked. Returns false when the child could not be started, with errno set.
static bool csandbox_probe_child(int flags, char *status, size_t size) {
    int pipe_fds[2];
    if (pipe2(pipe_fds, O_CLOEXEC) < 0) {
        return false;
    }
    pid_t child = clone(csandbox_probe_confinement, csandbox_probe_stack + sizeof csandbox_probe_stack,
                        flags | SIGCHLD, &pipe_fds[1]);
    int saved = errno;
    (void)close(pipe_fds[1]);
    if (child < 0) {
        (void)close(pipe_fds[0]);
        errno = saved;
        return false;
    }
    size_t length = 0;
    ssize_t count;
    while (length + 1 < size && ((count = read(pipe_fds[0], status + length, size - 1 - length)) > 0
                                 || (count < 0 && errno == EINTR))) {
        length += count > 0 ? (size_t)count : 0;
    }
    status[length] = '\0';
    (void)close(pipe_fds[0]);
    int wait_status;
    while (waitpid(child, &wait_status, 0) < 0 && errno == EINTR) {
    }
    if (length == 0 && !(WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == 0)) {
        snprintf(status, size, "error probe %d the probe child died (status 0x%x)", EINTR, wait_status);
    }
    return true;
}

/// Reports the namespaces, capabilities and seccomp layers.
static void csandbox_probe_confinement_layers(void) {
    char status[1024];
    char detail[1100];
    int flags = CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS
        | CLONE_NEWCGROUP;
    bool namespaces = csandbox_probe_child(flags, status, sizeof status);
    if (namespaces) {
        csandbox_probe_line("namespaces", true, "");
    } else {
        snprintf(detail, sizeof detail, "%d clone with new user, pid, mount, net, ipc, uts and cgroup namespaces: %s",
                 errno, strerror(errno));
        csandbox_probe_line("namespaces", false, detail);
        // Without namespaces the worker's steps can only be tried in the host's: seccomp still tells the truth.
        if (!csandbox_probe_child(0, status, sizeof status)) {
            snprintf(detail, sizeof detail, "%d fork: %s", errno, strerror(errno));
            csandbox_probe_line("capabilities", false, detail);
            csandbox_probe_line("seccomp", false, detail);
            return;
        }
    }
    // The status line is `error <step> <errno> <detail>`; report it as `<errno> <detail>` under its layer.
    char step[32] = "";
    int offset = 0;
    if (status[0] != '\0' && sscanf(status, "error %31s %n", step, &offset) == 1) {
        char *newline = strchr(status, '\n');
        if (newline) {
            *newline = '\0';
        }
        const char *rest = status + offset;
        if (strcmp(step, "capabilities") == 0) {
            csandbox_probe_line("capabilities", false, rest);
            csandbox_probe_line("seccomp", false, "0 not tried: dropping capabilities failed first");
        } else {
            csandbox_probe_line("capabilities", true, "");
            csandbox_probe_line("seccomp", false, rest);
        }
        return;
    }
    csandbox_probe_line("capabilities", true, "");
    csandbox_probe_line("seccomp", true, "");
}

/// Makes a throwaway cgroup in each controller and has a child join it as init does, then reports each
/// controller like a launch would.
static void csandbox_probe_cgroups(void) {
    char name[32];
    snprintf(name, sizeof name, ".probe-%d", (int)getpid());
    static struct csandbox_cgroups cgroups;
    csandbox_cgroups_create(&cgroups, name, 1ULL << 30, 1024, 1000);
    pid_t child = fork();
    if (child == 0) {
        csandbox_cgroups_join(&cgroups);
        csandbox_cgroups_report(&cgroups, STDOUT_FILENO);
        _exit(0);
    }
    csandbox_cgroups_close_join_files(&cgroups);
    if (child < 0) {
        int err = errno;
        for (int controller = 0; controller < CSANDBOX_CONTROLLER_COUNT; controller++) {
            if (cgroups.ok[controller]) {
                snprintf(cgroups.detail[controller], sizeof cgroups.detail[controller], "fork: %s (errno %d)",
                         strerror(err), err);
                cgroups.ok[controller] = false;
            }
        }
        csandbox_cgroups_report(&cgroups, STDOUT_FILENO);
    } else {
        while (waitpid(child, NULL, 0) < 0 && errno == EINTR) {
        }
    }
    csandbox_cgroups_remove(&cgroups);
}

int csandbox_export_seccomp_main(void) {
    const char *what;
    int err = csandbox_export_seccomp(STDOUT_FILENO, &what);
    if (err != 0) {
        csandbox_report("seccomp", err, "%s", what);
        return CSANDBOX_EXIT_SETUP_FAILED;
    }
    return 0;
}

int csandbox_probe_main(void) {
    csandbox_probe_cgroups();
    csandbox_probe_confinement_layers();
    return 0;
}
