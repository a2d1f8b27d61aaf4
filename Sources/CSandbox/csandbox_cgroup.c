// The space's cgroups (docs/SANDBOX.md, "Limits"): memory, pids and CPU limits that hold for everything in the
// space together, which rlimits cannot do. The monitor makes them before it clones init, init joins them
// itself before anything else, and the monitor removes them once the space is empty. Hosts differ (pure cgroup
// v2, v1, or a hybrid of v1 controllers and an empty v2), so each controller is found on its own, and one that
// does not work is reported, never fatal.
//
// Why init joins itself: moving another process (writing its pid to cgroup.procs) takes the kernel's global
// cgroup_threadgroup_rwsem for writing, whose first writer after a quiet spell waits for an RCU grace period:
// 7-22 ms measured on this project's CI host, longer than the rest of a launch. A single-threaded process
// moving itself through v1's `tasks` file (writing "0") skips that lock; it costs ~15 us per controller.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "csandbox_internal.h"

/// Where the hierarchies are mounted on every mainstream distribution: v1 controllers at
/// /sys/fs/cgroup/<controller> (a symlink for co-mounted ones such as cpu,cpuacct), v2 at /sys/fs/cgroup or, on
/// a hybrid host, /sys/fs/cgroup/unified.
static const char csandbox_cgroup_root[] = "/sys/fs/cgroup";

/// Below the monitor's own cgroup, so a space stays inside whatever limits the engine runs under (a systemd
/// service, a container) and only needs the engine's cgroup to be writable (delegated), not the root's.
static const char csandbox_cgroup_group[] = "agent-spaces";

static const char *const csandbox_controller_names[CSANDBOX_CONTROLLER_COUNT] = {"memory", "pids", "cpu"};

/// cpu.cfs_period_us / the period in cpu.max: 100 ms, the kernel's default.
#define CSANDBOX_CPU_PERIOD_US 100000ULL

/// Writes `text` to `directory`/`file`. Returns 0 or an errno value.
static int csandbox_write_cgroup_file(const char *directory, const char *file, const char *text) {
    char path[2304];
    snprintf(path, sizeof path, "%s/%s", directory, file);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
        return errno;
    }
    int result = csandbox_write_all(fd, text, strlen(text)) < 0 ? errno : 0;
    (void)close(fd);
    return result;
}

static bool csandbox_file_exists(const char *directory, const char *file) {
    char path[2304];
    snprintf(path, sizeof path, "%s/%s", directory, file);
    return access(path, F_OK) == 0;
}

/// Whether the comma-separated `list` (a /proc/self/cgroup hierarchy's controllers) names `controller`.
static bool csandbox_list_contains(const char *list, size_t length, const char *controller) {
    size_t wanted = strlen(controller);
    const char *end = list + length;
    while (list < end) {
        const char *comma = memchr(list, ',', (size_t)(end - list));
        size_t item = comma ? (size_t)(comma - list) : (size_t)(end - list);
        if (item == wanted && memcmp(list, controller, wanted) == 0) {
            return true;
        }
        list += item + 1;
    }
    return false;
}

/// Reads /proc/self/cgroup into `text` (NUL-terminated); an empty text when it cannot be read.
static void csandbox_read_own_cgroups(char *text, size_t size) {
    text[0] = '\0';
    int fd = open("/proc/self/cgroup", O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return;
    }
    ssize_t length = read(fd, text, size - 1);
    (void)close(fd);
    text[length > 0 ? length : 0] = '\0';
}

/// The monitor's cgroup path for the v1 hierarchy holding `controller` (or, with `controller` NULL, the v2
/// hierarchy), from the text of /proc/self/cgroup. Returns false when there is no such hierarchy.
static bool csandbox_own_cgroup(const char *text, const char *controller, char *path, size_t size) {
    // Lines are `id:controllers:path`; v2's is `0::path`.
    for (const char *line = text; *line != '\0';) {
        const char *newline = strchr(line, '\n');
        const char *end = newline ? newline : line + strlen(line);
        const char *first = memchr(line, ':', (size_t)(end - line));
        const char *second = first ? memchr(first + 1, ':', (size_t)(end - first - 1)) : NULL;
        if (second != NULL) {
            size_t list_length = (size_t)(second - first - 1);
            bool match = controller == NULL ? first == line + 1 && line[0] == '0' && list_length == 0
                                            : csandbox_list_contains(first + 1, list_length, controller);
            if (match) {
                const char *own = second + 1;
                size_t own_length = (size_t)(end - own);
                if (own_length == 1 && own[0] == '/') {
                    own_length = 0;  // the root: no path to add
                }
                snprintf(path, size, "%.*s", (int)own_length, own);
                return true;
            }
        }
        line = newline ? newline + 1 : end;
    }
    return false;
}

/// The cgroup v2 mount: /sys/fs/cgroup on a unified host, /sys/fs/cgroup/unified on a hybrid one; NULL if none.
static const char *csandbox_v2_mount(void) {
    if (csandbox_file_exists(csandbox_cgroup_root, "cgroup.controllers")) {
        return csandbox_cgroup_root;
    }
    if (csandbox_file_exists("/sys/fs/cgroup/unified", "cgroup.controllers")) {
        return "/sys/fs/cgroup/unified";
    }
    return NULL;
}

/// Whether the whitespace-separated list in `directory`/`file` names `controller`.
static bool csandbox_file_lists(const char *directory, const char *file, const char *controller) {
    char path[2304];
    snprintf(path, sizeof path, "%s/%s", directory, file);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return false;
    }
    char text[512];
    ssize_t length = read(fd, text, sizeof text - 1);
    (void)close(fd);
    if (length <= 0) {
        return false;
    }
    text[length] = '\0';
    size_t wanted = strlen(controller);
    for (char *word = strtok(text, " \n"); word != NULL; word = strtok(NULL, " \n")) {
        if (strlen(word) == wanted && memcmp(word, controller, wanted) == 0) {
            return true;
        }
    }
    return false;
}

/// Creates `directory` (and, when missing, its parent `agent-spaces/`), replacing an empty leftover of a space
/// of the same name whose monitor was killed before it could clean up. A directory that still holds processes
/// belongs to a live space: EBUSY. Returns 0 or an errno value.
static int csandbox_make_cgroup_directory(const char *directory) {
    if (mkdir(directory, 0755) == 0) {
        return 0;
    }
    if (errno == ENOENT) {
        // The first space under this cgroup: make agent-spaces/ (ENOENT again: the hierarchy is not mounted).
        char parent[2048];
        snprintf(parent, sizeof parent, "%s", directory);
        char *slash = strrchr(parent, '/');
        if (slash != NULL) {
            *slash = '\0';
        }
        if (mkdir(parent, 0755) < 0 && errno != EEXIST) {
            return errno;
        }
        return mkdir(directory, 0755) == 0 ? 0 : errno;
    }
    if (errno != EEXIST) {
        return errno;
    }
    if (rmdir(directory) < 0) {
        return errno;
    }
    return mkdir(directory, 0755) == 0 ? 0 : errno;
}

static void csandbox_mark_unavailable(struct csandbox_cgroups *cgroups, int controller, int err, const char *format,
                                      const char *argument) {
    cgroups->ok[controller] = false;
    char what[384];
    snprintf(what, sizeof what, format, argument);
    snprintf(cgroups->detail[controller], sizeof cgroups->detail[controller], "%s: %s (errno %d)", what,
             strerror(err), err);
}

/// Writes the limit of one controller into its (already created) directory. Returns 0 or an errno value, with
/// the file that failed in `*file`.
static int csandbox_write_limit(struct csandbox_cgroups *cgroups, int controller, unsigned long long value,
                                const char **file) {
    const char *directory = cgroups->directory[controller];
    bool v2 = cgroups->version2[controller];
    const char *version = v2 ? "v2" : "v1";
    char text[64];
    int err = 0;
    switch (controller) {
    case CSANDBOX_MEMORY:
        if (value == 0) {
            snprintf(cgroups->detail[controller], sizeof cgroups->detail[controller], "%s %s no limit", directory,
                     version);
            return 0;
        }
        snprintf(text, sizeof text, "%llu", value);
        *file = v2 ? "memory.max" : "memory.limit_in_bytes";
        err = csandbox_write_cgroup_file(directory, *file, text);
        // Swap may not stretch the limit: v1's memsw is memory plus swap, v2's swap.max is swap alone.
        // The file is missing when the kernel has no swap accounting: then there is nothing to stretch it.
        if (err == 0) {
            *file = v2 ? "memory.swap.max" : "memory.memsw.limit_in_bytes";
            err = csandbox_write_cgroup_file(directory, *file, v2 ? "0" : text);
            err = err == ENOENT ? 0 : err;
        }
        snprintf(cgroups->detail[controller], sizeof cgroups->detail[controller], "%s %s %s=%llu", directory, version,
                 v2 ? "memory.max" : "memory.limit_in_bytes", value);
        return err;
    case CSANDBOX_PIDS:
        if (value == 0) {
            snprintf(text, sizeof text, "max");
        } else {
            snprintf(text, sizeof text, "%llu", value);
        }
        *file = "pids.max";
        err = csandbox_write_cgroup_file(directory, *file, text);
        snprintf(cgroups->detail[controller], sizeof cgroups->detail[controller], "%s %s pids.max=%s", directory,
                 version, text);
        return err;
    default: {
        // A share of one CPU in thousandths: quota = millis/1000 of each period (at least the kernel's 1 ms).
        unsigned long long quota = value * CSANDBOX_CPU_PERIOD_US / 1000;
        if (value != 0 && quota < 1000) {
            quota = 1000;
        }
        if (v2) {
            if (value == 0) {
                snprintf(text, sizeof text, "max %llu", CSANDBOX_CPU_PERIOD_US);
            } else {
                snprintf(text, sizeof text, "%llu %llu", quota, CSANDBOX_CPU_PERIOD_US);
            }
            *file = "cpu.max";
            err = csandbox_write_cgroup_file(directory, *file, text);
            snprintf(cgroups->detail[controller], sizeof cgroups->detail[controller], "%s %s cpu.max=%s", directory,
                     version, text);
            return err;
        }
        if (value == 0) {
            snprintf(cgroups->detail[controller], sizeof cgroups->detail[controller], "%s %s no limit", directory,
                     version);
            return 0;
        }
        snprintf(text, sizeof text, "%llu", CSANDBOX_CPU_PERIOD_US);
        *file = "cpu.cfs_period_us";
        err = csandbox_write_cgroup_file(directory, *file, text);
        if (err == 0) {
            snprintf(text, sizeof text, "%llu", quota);
            *file = "cpu.cfs_quota_us";
            err = csandbox_write_cgroup_file(directory, *file, text);
        }
        snprintf(cgroups->detail[controller], sizeof cgroups->detail[controller],
                 "%s %s cpu.cfs_quota_us=%llu cpu.cfs_period_us=%llu", directory, version, quota,
                 CSANDBOX_CPU_PERIOD_US);
        return err;
    }
    }
}

/// Enables `controller` for the children of `directory` (v2's cgroup.subtree_control), unless it already is.
static int csandbox_enable_v2_controller(const char *directory, const char *controller) {
    if (csandbox_file_lists(directory, "cgroup.subtree_control", controller)) {
        return 0;
    }
    char text[32];
    snprintf(text, sizeof text, "+%s", controller);
    return csandbox_write_cgroup_file(directory, "cgroup.subtree_control", text);
}

void csandbox_cgroups_create(struct csandbox_cgroups *cgroups, const char *name, unsigned long long memory_bytes,
                             unsigned long long pids_max, unsigned long long cpu_millis) {
    memset(cgroups, 0, sizeof *cgroups);
    for (int controller = 0; controller < CSANDBOX_CONTROLLER_COUNT; controller++) {
        cgroups->join_fd[controller] = -1;
    }
    if (name == NULL) {
        return;
    }
    cgroups->requested = true;
    const unsigned long long limits[CSANDBOX_CONTROLLER_COUNT] = {memory_bytes, pids_max, cpu_millis};
    char own_cgroups[4096];
    csandbox_read_own_cgroups(own_cgroups, sizeof own_cgroups);
    // Looked up only for a controller without a v1 hierarchy.
    bool v2_looked_up = false;
    bool have_v2 = false;
    char v2_base[1536] = "";
    bool v2_leaf_made = false;
    int v2_leaf_error = 0;
    char v2_leaf[2048] = "";

    for (int controller = 0; controller < CSANDBOX_CONTROLLER_COUNT; controller++) {
        const char *controller_name = csandbox_controller_names[controller];
        char own[1024];
        char *directory = cgroups->directory[controller];
        const char *step_file = "";
        int err;
        bool version1 = csandbox_own_cgroup(own_cgroups, controller_name, own, sizeof own);
        if (!version1 && !v2_looked_up) {
            v2_looked_up = true;
            const char *v2_mount = csandbox_v2_mount();
            char v2_own[1024];
            have_v2 = v2_mount != NULL && csandbox_own_cgroup(own_cgroups, NULL, v2_own, sizeof v2_own);
            if (have_v2) {
                snprintf(v2_base, sizeof v2_base, "%s%s", v2_mount, v2_own);
            }
        }
        if (version1) {
            // cgroup v1: a hierarchy per controller (or co-mounted ones, reached through a symlink such as
            // cpu -> cpu,cpuacct), mounted at /sys/fs/cgroup/<controller>.
            snprintf(directory, sizeof cgroups->directory[controller], "%s/%s%s/%s/%s", csandbox_cgroup_root,
                     controller_name, own, csandbox_cgroup_group, name);
            if ((err = csandbox_make_cgroup_directory(directory)) != 0) {
                csandbox_mark_unavailable(cgroups, controller, err, "v1: mkdir %s", directory);
                directory[0] = '\0';
                continue;
            }
        } else if (have_v2 && csandbox_file_lists(v2_base, "cgroup.controllers", controller_name)) {
            // cgroup v2: one directory for every controller; each must be enabled for the children of the
            // engine's cgroup and of agent-spaces/. The first fails with EBUSY when the engine's cgroup holds
            // processes ("no internal processes"): the engine must then run in a delegated cgroup of its own.
            cgroups->version2[controller] = true;
            char group[1600];
            snprintf(group, sizeof group, "%s/%s", v2_base, csandbox_cgroup_group);
            if ((err = csandbox_enable_v2_controller(v2_base, controller_name)) != 0) {
                csandbox_mark_unavailable(cgroups, controller, err,
                                          "v2: enable the controller in %s/cgroup.subtree_control (run the engine "
                                          "in a delegated cgroup of its own, e.g. systemd Delegate=yes)",
                                          v2_base);
                continue;
            }
            if (mkdir(group, 0755) < 0 && errno != EEXIST) {
                csandbox_mark_unavailable(cgroups, controller, errno, "v2: mkdir %s", group);
                continue;
            }
            if ((err = csandbox_enable_v2_controller(group, controller_name)) != 0) {
                csandbox_mark_unavailable(cgroups, controller, err, "v2: enable the controller in %s", group);
                continue;
            }
            if (!v2_leaf_made && v2_leaf_error == 0) {
                snprintf(v2_leaf, sizeof v2_leaf, "%s/%s", group, name);
                v2_leaf_error = csandbox_make_cgroup_directory(v2_leaf);
                v2_leaf_made = v2_leaf_error == 0;
            }
            if (!v2_leaf_made) {
                csandbox_mark_unavailable(cgroups, controller, v2_leaf_error, "v2: mkdir %s", v2_leaf);
                continue;
            }
            snprintf(directory, sizeof cgroups->directory[controller], "%s", v2_leaf);
        } else {
            csandbox_mark_unavailable(cgroups, controller, ENOENT,
                                      "no %s controller: neither a v1 hierarchy at /sys/fs/cgroup nor one enabled "
                                      "in cgroup2 (mount the controller, or boot with cgroup v2 for it)",
                                      controller_name);
            continue;
        }
        if ((err = csandbox_write_limit(cgroups, controller, limits[controller], &step_file)) != 0) {
            char where[2400];
            snprintf(where, sizeof where, "write %s/%s", directory, step_file);
            csandbox_mark_unavailable(cgroups, controller, err, "%s", where);
            if (!cgroups->version2[controller]) {
                (void)rmdir(directory);
            }
            directory[0] = '\0';
            continue;
        }
        cgroups->ok[controller] = true;
    }
    // The files init joins through, opened here so that init needs no path (and no permission) of its own.
    int v2_join_fd = -1;
    for (int controller = 0; controller < CSANDBOX_CONTROLLER_COUNT; controller++) {
        if (!cgroups->ok[controller]) {
            continue;
        }
        bool v2 = cgroups->version2[controller];
        char path[2304];
        snprintf(path, sizeof path, "%s/%s", cgroups->directory[controller], v2 ? "cgroup.procs" : "tasks");
        int fd = v2 && v2_join_fd >= 0 ? v2_join_fd : open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0) {
            csandbox_mark_unavailable(cgroups, controller, errno, "open %s", path);
            continue;
        }
        if (v2) {
            v2_join_fd = fd;
        }
        cgroups->join_fd[controller] = fd;
    }
    // A v2 leaf that no controller ended up using is not worth keeping.
    if (v2_leaf_made) {
        bool used = false;
        for (int controller = 0; controller < CSANDBOX_CONTROLLER_COUNT; controller++) {
            used = used || (cgroups->ok[controller] && cgroups->version2[controller]);
        }
        if (!used) {
            (void)rmdir(v2_leaf);
        }
    }
}

void csandbox_cgroups_join(struct csandbox_cgroups *cgroups) {
    int v2_result = -1;  // the one v2 directory is joined once, for all its controllers
    for (int controller = 0; controller < CSANDBOX_CONTROLLER_COUNT; controller++) {
        if (!cgroups->ok[controller]) {
            continue;
        }
        int err;
        // "0" is the writer itself. v1's `tasks` moves the calling thread, which for a single-threaded process
        // is all of it, without the global lock; v2 has no such file and pays for cgroup.procs.
        if (cgroups->version2[controller]) {
            if (v2_result < 0) {
                v2_result = csandbox_write_all(cgroups->join_fd[controller], "0", 1) == 0 ? 0 : errno;
            }
            err = v2_result;
        } else {
            err = csandbox_write_all(cgroups->join_fd[controller], "0", 1) == 0 ? 0 : errno;
        }
        if (err != 0) {
            char directory[2048];
            snprintf(directory, sizeof directory, "%s", cgroups->directory[controller]);
            csandbox_mark_unavailable(cgroups, controller, err, "join %s", directory);
        }
    }
    csandbox_cgroups_close_join_files(cgroups);
}

void csandbox_cgroups_close_join_files(struct csandbox_cgroups *cgroups) {
    for (int controller = 0; controller < CSANDBOX_CONTROLLER_COUNT; controller++) {
        int fd = cgroups->join_fd[controller];
        if (fd < 0) {
            continue;
        }
        for (int other = controller; other < CSANDBOX_CONTROLLER_COUNT; other++) {
            if (cgroups->join_fd[other] == fd) {
                cgroups->join_fd[other] = -1;  // a v2 descriptor shared by several controllers is closed once
            }
        }
        (void)close(fd);
    }
}

void csandbox_cgroups_report(const struct csandbox_cgroups *cgroups, int fd) {
    if (!cgroups->requested) {
        return;
    }
    for (int controller = 0; controller < CSANDBOX_CONTROLLER_COUNT; controller++) {
        char line[1024];
        int length = snprintf(line, sizeof line, "cgroup %s %s %s\n", csandbox_controller_names[controller],
                              cgroups->ok[controller] ? "ok" : "unavailable", cgroups->detail[controller]);
        if (length > 0 && (size_t)length >= sizeof line) {
            length = (int)sizeof line - 1;
            line[length - 1] = '\n';
        }
        if (length > 0) {
            (void)csandbox_write_all(fd, line, (size_t)length);
        }
    }
}

/// rmdir, retried briefly on EBUSY: the last processes of a space leave its cgroup as they exit, which the
/// kernel may finish just after the monitor's wait for init returned.
static void csandbox_remove_cgroup_directory(const char *directory) {
    for (int attempt = 0; attempt < 200; attempt++) {
        if (rmdir(directory) == 0 || errno == ENOENT) {
            return;
        }
        if (errno != EBUSY) {
            break;
        }
        struct timespec pause = {.tv_nsec = 1000 * 1000};
        (void)nanosleep(&pause, NULL);
    }
    csandbox_report("cgroup_remove", errno, "rmdir %s", directory);
}

void csandbox_cgroups_remove(struct csandbox_cgroups *cgroups) {
    bool v2_removed = false;
    for (int controller = 0; controller < CSANDBOX_CONTROLLER_COUNT; controller++) {
        // Made but perhaps not joined (then init reported it unavailable): the directory is still there.
        if (cgroups->directory[controller][0] == '\0') {
            continue;
        }
        if (cgroups->version2[controller]) {
            if (v2_removed) {
                continue;
            }
            v2_removed = true;
        }
        csandbox_remove_cgroup_directory(cgroups->directory[controller]);
    }
}
