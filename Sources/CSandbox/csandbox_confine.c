// What the worker may still do once the space is built (docs/SANDBOX.md, "Confinement"): resource limits, no
// capabilities, and a seccomp filter. The namespaces already keep the space away from the host's objects; these
// layers close the kernel interfaces that a root user inside a user namespace could still reach (new
// namespaces, mounts, keyrings, BPF, io_uring, ...) and cap what one space can take from the machine.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <linux/securebits.h>
#include <sched.h>
#include <seccomp.h>
#include <stdint.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/ioctl.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "csandbox_internal.h"

// MARK: - rlimits

/// Sets both the soft and the hard limit, so that nothing inside can raise it again (raising a hard limit
/// needs CAP_SYS_RESOURCE in the host's user namespace). A value above the hard limit the engine already runs
/// under is lowered to it: the space is then already held tighter than asked.
static void csandbox_set_rlimit(int resource, const char *name, unsigned long long value) {
    struct rlimit limit;
    if (getrlimit(resource, &limit) < 0) {
        csandbox_fail("rlimits", errno, "get %s", name);
    }
    if (limit.rlim_max != RLIM_INFINITY && value > (unsigned long long)limit.rlim_max) {
        value = (unsigned long long)limit.rlim_max;
    }
    limit.rlim_cur = (rlim_t)value;
    limit.rlim_max = (rlim_t)value;
    if (setrlimit(resource, &limit) < 0) {
        csandbox_fail("rlimits", errno, "%s %llu", name, value);
    }
}

void csandbox_apply_rlimits(const struct csandbox_options *options) {
    // RLIMIT_NPROC counts the tasks (processes and threads) of the space's id in the space's user namespace,
    // so it is per space whatever host id the space runs as; init counts as one.
    if (options->rlimit_nproc != 0) {
        csandbox_set_rlimit(RLIMIT_NPROC, "RLIMIT_NPROC", options->rlimit_nproc);
    }
    if (options->rlimit_nofile != 0) {
        csandbox_set_rlimit(RLIMIT_NOFILE, "RLIMIT_NOFILE", options->rlimit_nofile);
    }
    if (options->rlimit_fsize != 0) {
        csandbox_set_rlimit(RLIMIT_FSIZE, "RLIMIT_FSIZE", options->rlimit_fsize);
    }
    // A core dump of a crashing program would land in the workspace.
    csandbox_set_rlimit(RLIMIT_CORE, "RLIMIT_CORE", 0);
}

// MARK: - Capabilities

void csandbox_drop_capabilities(void) {
    // The bounding set first: dropping from it needs CAP_SETPCAP, which the last step removes. Bits the kernel
    // does not know (above CAP_LAST_CAP of the running kernel) report EINVAL and are not there to drop.
    cap_value_t count = cap_max_bits();
    for (cap_value_t capability = 0; capability < count; capability++) {
        if (prctl(PR_CAPBSET_DROP, (unsigned long)capability, 0, 0, 0) < 0 && errno != EINVAL) {
            csandbox_fail("capabilities", errno, "drop capability %d from the bounding set", (int)capability);
        }
    }
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL) {
        csandbox_fail("capabilities", errno, "clear the ambient set");
    }
    // uid 0 inside gains no capability on exec or on a uid change, and nobody can undo that.
    unsigned long bits = SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP
        | SECBIT_NO_SETUID_FIXUP_LOCKED | SECBIT_KEEP_CAPS_LOCKED | SECBIT_NO_CAP_AMBIENT_RAISE
        | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED;
    if (prctl(PR_SET_SECUREBITS, bits, 0, 0, 0) < 0) {
        csandbox_fail("capabilities", errno, "set securebits 0x%lx", bits);
    }
    cap_t none = cap_init();  // every set empty
    if (none == NULL) {
        csandbox_fail("capabilities", errno, "cap_init");
    }
    if (cap_clear(none) < 0 || cap_set_proc(none) < 0) {
        int err = errno;
        (void)cap_free(none);
        csandbox_fail("capabilities", err, "clear the inheritable, permitted and effective sets");
    }
    (void)cap_free(none);
}

// MARK: - seccomp

/// Adds "fail `syscall_number` with `err`" to `filter`. Wraps the variadic `seccomp_rule_add`.
static inline int csandbox_seccomp_deny(scmp_filter_ctx filter, int syscall_number, int err) {
    return seccomp_rule_add_array(filter, SCMP_ACT_ERRNO((uint32_t)err), syscall_number, 0, NULL);
}

/// Adds "fail `syscall_number` with `err` when `(argument & mask) == value`". Masks never reach above bit 31
/// for arguments the kernel reads as 32-bit (`int`, `unsigned int`), so garbage a caller puts in a register's
/// upper half can neither dodge nor trigger the rule; libseccomp's own `SCMP_A0_32` does not mask that half.
static inline int csandbox_seccomp_deny_masked(scmp_filter_ctx filter, int syscall_number, int err,
                                               unsigned argument, uint64_t mask, uint64_t value) {
    struct scmp_arg_cmp comparison = {
        .arg = argument, .op = SCMP_CMP_MASKED_EQ, .datum_a = mask, .datum_b = value};
    return seccomp_rule_add_array(filter, SCMP_ACT_ERRNO((uint32_t)err), syscall_number, 1, &comparison);
}

/// Adds "fail `syscall_number` with `err` when the whole 64-bit `argument` >= `value`".
static inline int csandbox_seccomp_deny_at_least(scmp_filter_ctx filter, int syscall_number, int err,
                                                 unsigned argument, uint64_t value) {
    struct scmp_arg_cmp comparison = {.arg = argument, .op = SCMP_CMP_GE, .datum_a = value};
    return seccomp_rule_add_array(filter, SCMP_ACT_ERRNO((uint32_t)err), syscall_number, 1, &comparison);
}

/// Calls a space never needs, and that reach kernel state beyond its namespaces or are classic ways out:
/// denied outright with EPERM. SCMP_SYS gives a negative pseudo-number for a call the architecture lacks;
/// those are skipped.
static const int csandbox_denied_syscalls[] = {
    // The mount family: the space's tree is fixed once init has built it.
    SCMP_SYS(mount), SCMP_SYS(umount), SCMP_SYS(umount2), SCMP_SYS(move_mount), SCMP_SYS(open_tree),
    SCMP_SYS(fsopen), SCMP_SYS(fsconfig), SCMP_SYS(fsmount), SCMP_SYS(fspick), SCMP_SYS(mount_setattr),
    SCMP_SYS(pivot_root), SCMP_SYS(chroot),
    // Other processes' memory.
    SCMP_SYS(ptrace), SCMP_SYS(process_vm_readv), SCMP_SYS(process_vm_writev),
    // The kernel itself.
    SCMP_SYS(kexec_load), SCMP_SYS(kexec_file_load), SCMP_SYS(init_module), SCMP_SYS(finit_module),
    SCMP_SYS(delete_module), SCMP_SYS(create_module), SCMP_SYS(get_kernel_syms), SCMP_SYS(query_module),
    SCMP_SYS(bpf), SCMP_SYS(perf_event_open), SCMP_SYS(userfaultfd), SCMP_SYS(lookup_dcookie),
    SCMP_SYS(uselib), SCMP_SYS(nfsservctl), SCMP_SYS(iopl), SCMP_SYS(ioperm),
    // io_uring runs operations on kernel threads, out of this filter's sight. Bun falls back to plain calls.
    SCMP_SYS(io_uring_setup), SCMP_SYS(io_uring_enter), SCMP_SYS(io_uring_register),
    // Kernel keyrings are not namespaced.
    SCMP_SYS(keyctl), SCMP_SYS(add_key), SCMP_SYS(request_key),
    // New or other namespaces. clone with CLONE_NEW* is filtered by its flags below.
    SCMP_SYS(setns), SCMP_SYS(unshare),
    // File handles bypass the mount tree (the "shocker" escape).
    SCMP_SYS(open_by_handle_at), SCMP_SYS(name_to_handle_at),
    // Whole-machine state: power, swap, accounting, quotas, the kernel log, the clocks, the terminal.
    SCMP_SYS(reboot), SCMP_SYS(swapon), SCMP_SYS(swapoff), SCMP_SYS(acct), SCMP_SYS(quotactl),
    SCMP_SYS(quotactl_fd), SCMP_SYS(syslog), SCMP_SYS(settimeofday), SCMP_SYS(stime), SCMP_SYS(clock_settime),
    SCMP_SYS(clock_adjtime), SCMP_SYS(adjtimex), SCMP_SYS(vhangup),
};

/// Every CLONE_NEW* flag clone(2) accepts (CLONE_NEWTIME is only valid for unshare and clone3, both denied).
static const uint64_t csandbox_namespace_flags[] = {
    CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET,
};

/// Denies socket(2) and socketpair(2) for every domain but AF_UNIX (1), AF_INET (2) and AF_INET6 (10): netlink
/// (routing, audit, uevents), packet and raw link-layer sockets, and the long tail of rarely used protocol
/// families behind many kernel bugs. The kernel reads the domain as an int, so only the low 32 bits count.
static int csandbox_seccomp_deny_socket_domains(scmp_filter_ctx filter, int syscall_number) {
    // 0, 3, 4-7 and 8-9 by their low 32 bits; then everything >= 11, which also catches any value with a bit
    // set in the upper half (so the low-half rules need not look there).
    static const struct {
        uint64_t mask, value;
    } low_half[] = {{0xffffffffULL, 0}, {0xffffffffULL, 3}, {0xfffffffcULL, 4}, {0xfffffffeULL, 8}};
    for (size_t i = 0; i < sizeof low_half / sizeof low_half[0]; i++) {
        int result = csandbox_seccomp_deny_masked(filter, syscall_number, EPERM, 0, low_half[i].mask,
                                                  low_half[i].value);
        if (result != 0) {
            return result;
        }
    }
    return csandbox_seccomp_deny_at_least(filter, syscall_number, EPERM, 0, 11);
}

/// Denies personality(2) for every persona but PER_LINUX (0) and the query 0xffffffff: other personas change
/// the address-space layout (ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC, MMAP_PAGE_ZERO) and have been used to
/// defeat ASLR or map page zero. The kernel reads the persona as 32-bit. libseccomp cannot compare one
/// argument twice in a rule, so "the low 32 bits are neither all 0 nor all 1" is spelled as "some bit is 1 and
/// the next one (cyclically) is 0": going round the 32 bits of a value that has both, a 1 followed by a 0 must
/// occur. One rule per bit.
static int csandbox_seccomp_deny_personas(scmp_filter_ctx filter) {
    for (unsigned bit = 0; bit < 32; bit++) {
        uint64_t one = 1ULL << bit;
        uint64_t next = 1ULL << ((bit + 1) % 32);
        int result = csandbox_seccomp_deny_masked(filter, SCMP_SYS(personality), EPERM, 0, one | next, one);
        if (result != 0) {
            return result;
        }
    }
    return 0;
}

/// Builds the filter in `filter`. Returns 0 or a negative errno value (libseccomp's convention).
static int csandbox_seccomp_build(scmp_filter_ctx filter, const char **what) {
    int result;
    // Only the native architecture's calls are allowed at all: on x86_64 a 32-bit `int 0x80` or an x32 call
    // (whose numbers have bit 30 set, which libseccomp's x86_64 filter checks) kills the process rather than
    // reaching a second syscall table this filter does not describe.
    *what = "bad architecture action";
    if ((result = seccomp_attr_set(filter, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS)) != 0) {
        return result;
    }
    // A binary tree over the syscall numbers: the calls with rules cost a few comparisons rather than a scan.
    // (Calls without rules take the kernel's per-syscall cache and never run the filter.)
    *what = "optimize";
    (void)seccomp_attr_set(filter, SCMP_FLTATR_CTL_OPTIMIZE, 2);

    *what = "deny list";
    for (size_t i = 0; i < sizeof csandbox_denied_syscalls / sizeof csandbox_denied_syscalls[0]; i++) {
        if (csandbox_denied_syscalls[i] < 0) {
            continue;
        }
        if ((result = csandbox_seccomp_deny(filter, csandbox_denied_syscalls[i], EPERM)) != 0) {
            return result;
        }
    }
    *what = "clone namespace flags";
    for (size_t i = 0; i < sizeof csandbox_namespace_flags / sizeof csandbox_namespace_flags[0]; i++) {
        uint64_t flag = csandbox_namespace_flags[i];
        if ((result = csandbox_seccomp_deny_masked(filter, SCMP_SYS(clone), EPERM, 0, flag, flag)) != 0) {
            return result;
        }
    }
    // clone3 passes its flags in memory, which a filter cannot read: ENOSYS makes glibc (pthread_create,
    // posix_spawn, fork) fall back to clone, whose flags the rules above see.
    *what = "clone3";
    if ((result = csandbox_seccomp_deny(filter, SCMP_SYS(clone3), ENOSYS)) != 0) {
        return result;
    }
    // Faking terminal input (TIOCSTI) or the console's selection and keyboard (TIOCLINUX); cmd is 32-bit.
    *what = "ioctl";
    if ((result = csandbox_seccomp_deny_masked(filter, SCMP_SYS(ioctl), EPERM, 1, 0xffffffffULL, TIOCSTI)) != 0
        || (result = csandbox_seccomp_deny_masked(filter, SCMP_SYS(ioctl), EPERM, 1, 0xffffffffULL, TIOCLINUX))
            != 0) {
        return result;
    }
    *what = "socket domains";
    if ((result = csandbox_seccomp_deny_socket_domains(filter, SCMP_SYS(socket))) != 0
        || (result = csandbox_seccomp_deny_socket_domains(filter, SCMP_SYS(socketpair))) != 0) {
        return result;
    }
    *what = "personality";
    return csandbox_seccomp_deny_personas(filter);
}

/// Builds the filter and hands it to `use` (named `use_name` in errors); returns 0 or an errno value.
static int csandbox_with_seccomp_filter(int (*use)(const scmp_filter_ctx, int), const char *use_name, int fd,
                                        const char **what) {
    *what = "seccomp_init";
    scmp_filter_ctx filter = seccomp_init(SCMP_ACT_ALLOW);
    if (filter == NULL) {
        return ENOMEM;
    }
    int result = csandbox_seccomp_build(filter, what);
    if (result == 0) {
        *what = use_name;
        result = use(filter, fd);
    }
    seccomp_release(filter);
    return result < 0 ? -result : result;
}

static int csandbox_seccomp_load_filter(const scmp_filter_ctx filter, int fd) {
    (void)fd;
    return seccomp_load(filter);
}

int csandbox_load_seccomp(const char **what) {
    return csandbox_with_seccomp_filter(csandbox_seccomp_load_filter, "seccomp_load", -1, what);
}

/// Follows the exported program on the pipe, so that the worker can tell a complete program from one cut short
/// by a failed export (a prefix could end in a return instruction and load as a weaker filter). Not a valid
/// instruction, so it can never be mistaken for the program's last.
static const struct sock_filter csandbox_seccomp_trailer = {.code = 0xffff, .jt = 0xff, .jf = 0xff, .k = ~0U};

static int csandbox_seccomp_export_with_trailer(const scmp_filter_ctx filter, int fd) {
    int result = seccomp_export_bpf(filter, fd);
    if (result != 0) {
        return result;
    }
    return csandbox_write_all(fd, &csandbox_seccomp_trailer, sizeof csandbox_seccomp_trailer) == 0 ? 0 : -errno;
}

int csandbox_export_seccomp(int fd, const char **what) {
    return csandbox_with_seccomp_filter(csandbox_seccomp_export_with_trailer, "seccomp_export_bpf", fd, what);
}

int csandbox_install_seccomp(int fd, const char **what) {
    // BPF_MAXINSNS instructions of 8 bytes, plus the trailer; a longer program is refused by the kernel anyway.
    static struct sock_filter program[BPF_MAXINSNS + 1];
    size_t length = 0;
    *what = "read the filter from the monitor";
    while (length < sizeof program) {
        ssize_t count = read(fd, (char *)program + length, sizeof program - length);
        if (count < 0 && errno == EINTR) {
            continue;
        }
        if (count < 0) {
            return errno;
        }
        if (count == 0) {
            break;
        }
        length += (size_t)count;
    }
    size_t instructions = length / sizeof program[0];
    if (length % sizeof program[0] != 0 || instructions < 2
        || memcmp(&program[instructions - 1], &csandbox_seccomp_trailer, sizeof csandbox_seccomp_trailer) != 0) {
        *what = "the monitor sent no complete filter";
        return EPROTO;
    }
    struct sock_fprog filter = {.len = (unsigned short)(instructions - 1), .filter = program};
    *what = "PR_SET_SECCOMP";
    return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &filter, 0, 0) == 0 ? 0 : errno;
}
