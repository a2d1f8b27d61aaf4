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
    struct csandbox_bind *binds;
    size_t bind_count;
    unsigned long long tmp_size;
    char **environment;  // NULL-terminated, exactly the --env values
    const char *cwd;
    char **program;      // NULL-terminated argv of the worker; program[0] is the path to exec
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

// csandbox_init.c

/// The body of init (pid 1 of the space): waits for the monitor's release, sets the space up, runs the worker
/// and stays as its reaper until the space ends.
_Noreturn void csandbox_run_init(const struct csandbox_options *options, int release_fd);

#endif
