// The launcher's command line (docs/SANDBOX.md). Parsed strictly: the engine is the only caller, so anything
// unexpected is a bug worth a precise status line rather than a guess.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "csandbox_internal.h"

/// Parses a plain decimal number no larger than `maximum` (no sign, no spaces, no empty string).
static bool csandbox_parse_number(const char *text, unsigned long long maximum, unsigned long long *value) {
    if (text == NULL || text[0] < '0' || text[0] > '9') {
        return false;
    }
    errno = 0;
    char *end;
    unsigned long long parsed = strtoull(text, &end, 10);
    if (errno != 0 || *end != '\0' || parsed > maximum) {
        return false;
    }
    *value = parsed;
    return true;
}

/// Parses a descriptor number handed down by the engine: above the worker's five and, when `must_be_open`, open
/// in this process. The workspace and bind descriptors are checked by the step that mounts them, so that a bad
/// one is reported as that step.
static int csandbox_parse_fd(const char *option, const char *text, bool must_be_open) {
    unsigned long long value;
    if (!csandbox_parse_number(text, INT_MAX, &value)) {
        csandbox_fail("args", EINVAL, "%s needs a descriptor number, got '%s'", option, text ? text : "");
    }
    if (value < CSANDBOX_FIRST_EXTRA_FD) {
        csandbox_fail("args", EINVAL, "%s %llu: descriptors 0-4 are the worker's; use %d or above", option, value,
                      CSANDBOX_FIRST_EXTRA_FD);
    }
    if (must_be_open && fcntl((int)value, F_GETFD) < 0) {
        csandbox_fail("args", errno, "%s %llu is not an open descriptor", option, value);
    }
    return (int)value;
}

/// Whether `path` is absolute and normalised: no empty, `.` or `..` components and no trailing slash.
static bool csandbox_is_clean_absolute_path(const char *path) {
    if (path[0] != '/' || path[1] == '\0' || strlen(path) >= PATH_MAX) {
        return false;
    }
    const char *component = path + 1;
    while (true) {
        const char *slash = strchr(component, '/');
        size_t length = slash ? (size_t)(slash - component) : strlen(component);
        if (length == 0 || (length == 1 && component[0] == '.')
            || (length == 2 && component[0] == '.' && component[1] == '.')) {
            return false;
        }
        if (slash == NULL) {
            return true;
        }
        component = slash + 1;
    }
}

/// Whether `path` is `prefix` or lies below it.
static bool csandbox_is_under(const char *path, const char *prefix) {
    size_t length = strlen(prefix);
    return strncmp(path, prefix, length) == 0 && (path[length] == '\0' || path[length] == '/');
}

/// Hostnames end up in /etc/hosts: letters, digits, '-' and '.', 1-64 characters (HOST_NAME_MAX).
static bool csandbox_is_valid_hostname(const char *name) {
    size_t length = strlen(name);
    if (length == 0 || length > 64) {
        return false;
    }
    for (const char *c = name; *c != '\0'; c++) {
        bool allowed = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9')
            || *c == '-' || *c == '.';
        if (!allowed) {
            return false;
        }
    }
    return true;
}

/// A cgroup name becomes one directory name: letters, digits, '-', '_' and '.', 1-128 characters, not starting
/// with '.' (so never `.`, `..` or the probe's `.probe-PID`).
static bool csandbox_is_valid_cgroup_name(const char *name) {
    size_t length = strlen(name);
    if (length == 0 || length > 128 || name[0] == '.') {
        return false;
    }
    for (const char *c = name; *c != '\0'; c++) {
        bool allowed = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9')
            || *c == '-' || *c == '_' || *c == '.';
        if (!allowed) {
            return false;
        }
    }
    return true;
}

/// Parses a limit option (`--rlimit-*`, `--memory-bytes`, `--pids-max`, `--cpu-millis`) into its field: a
/// positive number, or for the cgroup limits also 0 ("no limit"). Returns false when `option` is not one.
static bool csandbox_parse_limit(const char *option, const char *value, struct csandbox_options *options) {
    const struct {
        const char *option;
        unsigned long long *field;
        bool zero_allowed;
    } limits[] = {
        {"--rlimit-nproc", &options->rlimit_nproc, false},
        {"--rlimit-nofile", &options->rlimit_nofile, false},
        {"--rlimit-fsize", &options->rlimit_fsize, false},
        {"--memory-bytes", &options->memory_bytes, true},
        {"--pids-max", &options->pids_max, true},
        {"--cpu-millis", &options->cpu_millis, true},
    };
    for (size_t i = 0; i < sizeof limits / sizeof limits[0]; i++) {
        if (strcmp(option, limits[i].option) != 0) {
            continue;
        }
        // Below RLIM_INFINITY (all ones), and small enough for every cgroup file's arithmetic.
        unsigned long long number;
        if (!csandbox_parse_number(value, 1ULL << 62, &number) || (number == 0 && !limits[i].zero_allowed)) {
            csandbox_fail("args", EINVAL, "%s needs a %snumber, got '%s'", option,
                          limits[i].zero_allowed ? "" : "positive ", value);
        }
        *limits[i].field = number;
        return true;
    }
    return false;
}

void csandbox_parse_options(int argc, char **argv, struct csandbox_options *options) {
    // Find the status pipe first, so that every later complaint reaches the engine.
    for (int i = 1; i + 1 < argc && strcmp(argv[i], "--") != 0; i++) {
        if (strcmp(argv[i], "--status-fd") == 0) {
            unsigned long long value;
            if (csandbox_parse_number(argv[i + 1], INT_MAX, &value) && value >= CSANDBOX_FIRST_EXTRA_FD
                && fcntl((int)value, F_GETFD) >= 0) {
                csandbox_set_status_fd((int)value);
            }
        }
    }

    *options = (struct csandbox_options){
        .workspace_fd = -1,
        .status_fd = -1,
        .lifeline_fd = -1,
        .seccomp_fd = -1,
        .tmp_size = CSANDBOX_DEFAULT_TMP_SIZE,
        .cwd = "/workspace",
    };
    // Every list is bounded by argc, so allocate once at that size.
    options->binds = calloc((size_t)argc, sizeof *options->binds);
    options->environment = calloc((size_t)argc + 1, sizeof *options->environment);
    if (options->binds == NULL || options->environment == NULL) {
        csandbox_fail("args", ENOMEM, "allocating the option lists");
    }
    bool have_uid = false, have_gid = false;
    size_t env_count = 0;

    int i = 1;
    for (; i < argc; i++) {
        const char *option = argv[i];
        if (strcmp(option, "--") == 0) {
            i++;
            break;
        }
        if (strncmp(option, "--", 2) != 0) {
            csandbox_fail("args", EINVAL, "unexpected argument '%s' (the program follows '--')", option);
        }
        if (i + 1 >= argc) {
            csandbox_fail("args", EINVAL, "%s needs a value", option);
        }
        const char *value = argv[++i];
        unsigned long long number;
        if (strcmp(option, "--uid") == 0 || strcmp(option, "--gid") == 0) {
            // (uid_t)-1 means "unchanged" to the kernel, so it can never be a mapping target.
            if (!csandbox_parse_number(value, UINT32_MAX - 1, &number)) {
                csandbox_fail("args", EINVAL, "%s needs a numeric id, got '%s'", option, value);
            }
            if (option[2] == 'u') {
                options->uid = (uid_t)number;
                have_uid = true;
            } else {
                options->gid = (gid_t)number;
                have_gid = true;
            }
        } else if (strcmp(option, "--hostname") == 0) {
            if (!csandbox_is_valid_hostname(value)) {
                csandbox_fail("args", EINVAL, "hostname '%s' must be 1-64 letters, digits, '-' or '.'", value);
            }
            options->hostname = value;
        } else if (strcmp(option, "--workspace-fd") == 0) {
            options->workspace_fd = csandbox_parse_fd(option, value, false);
        } else if (strcmp(option, "--status-fd") == 0) {
            options->status_fd = csandbox_parse_fd(option, value, true);
        } else if (strcmp(option, "--lifeline-fd") == 0) {
            options->lifeline_fd = csandbox_parse_fd(option, value, true);
        } else if (strcmp(option, "--seccomp-fd") == 0) {
            options->seccomp_fd = csandbox_parse_fd(option, value, true);
        } else if (strcmp(option, "--bind-ro-fd") == 0) {
            const char *colon = strchr(value, ':');
            if (colon == NULL) {
                csandbox_fail("args", EINVAL, "--bind-ro-fd needs FD:/inside/path, got '%s'", value);
            }
            char fd_text[16];
            size_t fd_length = (size_t)(colon - value);
            if (fd_length == 0 || fd_length >= sizeof fd_text) {
                csandbox_fail("args", EINVAL, "--bind-ro-fd needs FD:/inside/path, got '%s'", value);
            }
            memcpy(fd_text, value, fd_length);
            fd_text[fd_length] = '\0';
            const char *inside = colon + 1;
            if (!csandbox_is_clean_absolute_path(inside)) {
                csandbox_fail("args", EINVAL, "bind path '%s' must be absolute without '.', '..' or '//'", inside);
            }
            // These are mounted by init itself; a bind below them would land on the host (the workspace) or be
            // hidden, so refuse it outright.
            static const char *const reserved[] = {"/usr", "/workspace", "/tmp", "/dev", "/proc"};
            for (size_t r = 0; r < sizeof reserved / sizeof reserved[0]; r++) {
                if (csandbox_is_under(inside, reserved[r])) {
                    csandbox_fail("args", EINVAL, "bind path '%s' is under %s, which the launcher mounts itself",
                                  inside, reserved[r]);
                }
            }
            options->binds[options->bind_count++] = (struct csandbox_bind){
                .fd = csandbox_parse_fd(option, fd_text, false),
                .inside_path = inside,
            };
        } else if (strcmp(option, "--tmp-size") == 0) {
            // tmpfs reads size=0 as "unlimited", the opposite of what a caller asking for 0 bytes means.
            if (!csandbox_parse_number(value, ULLONG_MAX, &number) || number == 0) {
                csandbox_fail("args", EINVAL, "--tmp-size needs a positive number of bytes, got '%s'", value);
            }
            options->tmp_size = number;
        } else if (strcmp(option, "--env") == 0) {
            if (strchr(value, '=') == NULL || value[0] == '=') {
                csandbox_fail("args", EINVAL, "--env needs KEY=VALUE, got '%s'", value);
            }
            options->environment[env_count++] = argv[i];
        } else if (strcmp(option, "--cgroup") == 0) {
            if (!csandbox_is_valid_cgroup_name(value)) {
                csandbox_fail("args", EINVAL,
                              "--cgroup '%s' must be 1-128 letters, digits, '-', '_' or '.', not starting with '.'",
                              value);
            }
            options->cgroup_name = value;
        } else if (csandbox_parse_limit(option, value, options)) {
            // parsed into its field
        } else if (strcmp(option, "--cwd") == 0) {
            if (value[0] != '/') {
                csandbox_fail("args", EINVAL, "--cwd '%s' must be an absolute path inside the space", value);
            }
            options->cwd = value;
        } else {
            csandbox_fail("args", EINVAL, "unknown option '%s'", option);
        }
    }
    options->environment[env_count] = NULL;
    options->program = argv + i;

    if (!have_uid || !have_gid) {
        csandbox_fail("args", EINVAL, "--uid and --gid are required");
    }
    // An escape must land as nobody in particular, never as the host's root (docs/SANDBOX.md).
    if (options->uid == 0 || options->gid == 0) {
        csandbox_fail("args", EPERM, "the space's root may not map to host id 0; pass an unprivileged id");
    }
    if (options->hostname == NULL) {
        csandbox_fail("args", EINVAL, "--hostname is required");
    }
    if (options->workspace_fd < 0 || options->status_fd < 0 || options->lifeline_fd < 0) {
        csandbox_fail("args", EINVAL, "--workspace-fd, --status-fd and --lifeline-fd are required");
    }
    if (i >= argc || options->program[0][0] == '\0') {
        csandbox_fail("args", EINVAL, "no program after '--'");
    }
    // The worker's five descriptors must all be there, or the launcher's own pipes would take their numbers.
    for (int fd = 0; fd < CSANDBOX_FIRST_EXTRA_FD; fd++) {
        if (fcntl(fd, F_GETFD) < 0) {
            csandbox_fail("args", errno, "descriptor %d (stdin, stdout, stderr, requests, responses) is not open", fd);
        }
    }
}
