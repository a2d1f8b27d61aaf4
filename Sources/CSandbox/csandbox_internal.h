// Declarations shared by the launcher's .c files. Not part of the module's public header: Swift never sees
// these, and every symbol still carries the `csandbox_` prefix so that nothing can collide when the library
// is linked into a larger program.
#ifndef CSANDBOX_INTERNAL_H
#define CSANDBOX_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/// Descriptors 0-4 are the worker's (stdin, stdout, stderr, requests, responses); every other descriptor the
/// launcher is handed must be numbered from here up, so that one `close_range` can keep them from the worker.
#define CSANDBOX_FIRST_EXTRA_FD 5

/// Exit status of any launcher process whose set-up step failed (the status line says which step).
#define CSANDBOX_EXIT_SETUP_FAILED 127

/// Default size of the space's `/tmp` (and `/dev/shm`) tmpfs: 256 MiB.
#define CSANDBOX_DEFAULT_TMP_SIZE (256ULL << 20)

/// One `--bind-ro-fd FD:/inside/path`: an `O_PATH` descriptor of a host file or directory and where it
/// appears inside the space.
struct csandbox_bind {
    int fd;
    const char *inside_path;
};

/// The parsed command line. Strings point into argv; arrays are allocated once and never freed (the process
/// either execs or exits).
struct csandbox_options {
    uid_t uid;
    gid_t gid;
    const char *hostname;
    int workspace_fd;
    int status_fd;
    int lifeline_fd;
    int seccomp_fd;  // -1, or a pipe holding the worker's filter as `--export-seccomp` writes it
    struct csandbox_bind *binds;
    size_t bind_count;
    unsigned long long tmp_size;
    char **environment;  // NULL-terminated, exactly the --env values
    const char *cwd;
    char **program;      // NULL-terminated argv of the worker; program[0] is the path to exec
    // Resource limits of the worker and everything it runs; 0 means "leave as inherited".
    unsigned long long rlimit_nproc;
    unsigned long long rlimit_nofile;
    unsigned long long rlimit_fsize;
    // The space's cgroup (`agent-spaces/<cgroup_name>` below the monitor's own cgroup in each controller);
    // NULL for none. 0 means "no limit" for each of the three.
    const char *cgroup_name;
    unsigned long long memory_bytes;
    unsigned long long pids_max;
    unsigned long long cpu_millis;
};

// csandbox_status.c — reporting set-up failures.

/// Sends later failure reports to `fd` (the engine's status pipe) instead of stderr.
void csandbox_set_status_fd(int fd);

/// Writes `error <step> <err> <detail>\n` to the status fd (stderr when none is set yet). Async-signal-safe
/// apart from the formatting, which only uses the stack.
void csandbox_report(const char *step, int err, const char *format, ...) __attribute__((format(printf, 3, 4)));

/// Reports like `csandbox_report` and exits the calling process with CSANDBOX_EXIT_SETUP_FAILED.
_Noreturn void csandbox_fail(const char *step, int err, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

// csandbox_util.c — small wrappers around system calls libc does not wrap everywhere.

/// write(2) until everything is written, retrying EINTR. Returns 0, or -1 with errno set.
int csandbox_write_all(int fd, const void *buffer, size_t length);

/// Marks every descriptor >= `first` close-on-exec. Returns 0, or -1 with errno set.
int csandbox_cloexec_from(int first);

/// Closes every descriptor that is neither 0-4 nor listed in `keep`. Returns 0, or -1 with errno set.
int csandbox_close_unlisted(const int *keep, size_t keep_count);

/// Makes the mount at `path` nosuid, nodev and, when `read_only`, read-only; the mounts below it too when
/// `recursive`. Returns 0, or -1 with errno set.
int csandbox_restrict_mount(const char *path, bool recursive, bool read_only);

// csandbox_options.c

/// Parses argv into `options`; on a bad command line reports step `args` and exits.
void csandbox_parse_options(int argc, char **argv, struct csandbox_options *options);

// csandbox_rootfs.c — the space's file system, built by init in its own mount namespace.

/// Reopens the workspace and bind descriptors inside init's mount namespace, so they can be bind sources. Runs
/// before init switches to the space's id. Exits through csandbox_fail on error.
void csandbox_adopt_host_descriptors(const struct csandbox_options *options);

/// Builds the new root on a tmpfs and leaves the working directory at it. Still in the host's root, so the
/// `/proc/self/fd/N` sources and host paths like `/usr` resolve. Exits through csandbox_fail on error.
void csandbox_build_root(const struct csandbox_options *options);

/// Makes the working directory (the new root) the root, detaches the host's, and remounts the root read-only.
void csandbox_enter_root(void);

// csandbox_confine.c — what the worker (and init) may still do: capabilities, rlimits, the seccomp filter.

/// Sets the worker's rlimits from the options (soft = hard) and RLIMIT_CORE to 0. Exits through csandbox_fail.
void csandbox_apply_rlimits(const struct csandbox_options *options);

/// Empties the bounding, ambient, inheritable, permitted and effective sets, and locks the securebits so that
/// no exec, not even of a program as uid 0, gives any back. Exits through csandbox_fail (step `capabilities`).
void csandbox_drop_capabilities(void);

/// Builds the space's seccomp filter and loads it into the calling process (which must have no_new_privs).
/// Returns 0, or an errno value with `*what` naming the part that failed.
int csandbox_load_seccomp(const char **what);

/// Builds the space's seccomp filter and writes it to `fd` as a BPF program followed by a trailer that marks
/// it complete. The monitor does this while init builds the root, off the launch's critical path.
/// Returns 0, or an errno value with `*what` naming the part that failed.
int csandbox_export_seccomp(int fd, const char **what);

/// Reads a program written by csandbox_export_seccomp from `fd` until end-of-file and installs it in the
/// calling process (which must have no_new_privs). Returns 0, or an errno value with `*what` naming the part.
int csandbox_install_seccomp(int fd, const char **what);

// csandbox_cgroup.c — the space's cgroups: made by the monitor before it clones init, joined by init itself,
// removed by the monitor once the space is empty.

/// The controllers a space is limited by, in the order they are reported.
enum csandbox_controller { CSANDBOX_MEMORY, CSANDBOX_PIDS, CSANDBOX_CPU, CSANDBOX_CONTROLLER_COUNT };

/// One space's cgroups, per controller: whether it works, its directory (one directory shared by every
/// controller on cgroup v2), the open file through which init joins it, and a line of detail: the limit set,
/// or why the controller is unavailable.
struct csandbox_cgroups {
    bool requested;
    bool ok[CSANDBOX_CONTROLLER_COUNT];
    bool version2[CSANDBOX_CONTROLLER_COUNT];
    int join_fd[CSANDBOX_CONTROLLER_COUNT];  // -1 when none; v2 controllers share one
    char directory[CSANDBOX_CONTROLLER_COUNT][2048];
    char detail[CSANDBOX_CONTROLLER_COUNT][512];
};

/// Creates the space's cgroup in each controller that works here, writes the limits and opens the file that
/// joins it (v1 `tasks`, v2 `cgroup.procs`). Never fails: a controller that does not work is marked
/// unavailable with the reason. With `name` NULL, does nothing.
void csandbox_cgroups_create(struct csandbox_cgroups *cgroups, const char *name, unsigned long long memory_bytes,
                             unsigned long long pids_max, unsigned long long cpu_millis);

/// Moves the calling (single-threaded) process into each created cgroup through the join files, and closes
/// them. A controller it cannot join becomes unavailable.
void csandbox_cgroups_join(struct csandbox_cgroups *cgroups);

/// Closes the join files (in the monitor, once init has its copies).
void csandbox_cgroups_close_join_files(struct csandbox_cgroups *cgroups);

/// Writes one `cgroup <controller> <ok|unavailable> <detail>` line per controller to `fd`.
void csandbox_cgroups_report(const struct csandbox_cgroups *cgroups, int fd);

/// Removes the space's cgroup directories. Call only when no process of the space is left.
void csandbox_cgroups_remove(struct csandbox_cgroups *cgroups);

// csandbox_probe.c

/// `spaces-launcher --export-seccomp`: writes the worker's filter, as csandbox_export_seccomp does, to stdout.
/// The engine runs this once and hands the program to every launch (`--seccomp-fd`), so that no launch spends
/// time compiling it. Returns the exit code.
int csandbox_export_seccomp_main(void);

/// `spaces-launcher --probe`: tries each layer that can only be known by trying (loading a seccomp filter,
/// making and joining a cgroup per controller) and prints one line per layer to stdout. Returns the exit code.
int csandbox_probe_main(void);

// csandbox_init.c

/// What init gets from the monitor besides the options.
struct csandbox_init_handoff {
    /// Read end of the release pipe: one byte once the id maps are written; end-of-file if the monitor failed.
    int release_fd;
    /// Read end of the pipe on which the monitor sends the worker's seccomp filter.
    int seccomp_fd;
    /// init's copy of the space's cgroups, with the join files open.
    struct csandbox_cgroups *cgroups;
};

/// The body of init (pid 1 of the space): joins the space's cgroups, waits for the monitor's release, sets the
/// space up, runs the worker and stays as its reaper until the space ends.
_Noreturn void csandbox_run_init(const struct csandbox_options *options, struct csandbox_init_handoff handoff);

#endif
