#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// A space that could not be started: which step failed, the system's error number, what happened, and what
/// to do about it.
///
/// Steps that run in the launcher carry the names it reports (`clone`, `uid_map`, `bind_workspace`, `cgroupns`,
/// `rlimits`, `capabilities`, `seccomp`, `exec`, …; docs/SANDBOX.md, "Order of the set-up"); steps on the
/// engine's side are `spec`, `launcher`, `open_workspace`, `open_bind`, `pipe`, `spawn` and `status`.
public struct SandboxError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The step that failed.
    public var step: String
    /// The `errno` value the step failed with (0 when there is none).
    public var errno: Int32
    /// What happened, for a person: the step's own detail plus the system's text for `errno`.
    public var message: String
    /// What to do about it.
    public var hint: String

    public init(step: String, errno: Int32, message: String, hint: String) {
        self.step = step
        self.errno = errno
        self.message = message
        self.hint = hint
    }

    /// An error whose message is `detail` plus the system's text for `errno`, and whose hint is looked up from
    /// the step and the error number.
    init(step: String, errno: Int32, detail: String) {
        let system = errno == 0 ? "" : String(cString: strerror(errno))
        let message = detail.isEmpty ? system : system.isEmpty ? detail : "\(detail): \(system)"
        self.init(step: step, errno: errno, message: message, hint: Self.hint(step: step, errno: errno))
    }

    public var description: String {
        "setting up the space failed at step \(step) (errno \(errno)): \(message). \(hint)"
    }

    /// Parses the launcher's status line, `error <step> <errno> <detail>`; nil when it is not one.
    init?(statusLine: Substring) {
        let parts = statusLine.split(separator: " ", maxSplits: 3, omittingEmptySubsequences: false)
        guard parts.count >= 3, parts[0] == "error", let number = Int32(parts[2]) else {
            return nil
        }
        let detail = parts.count == 4 && parts[3] != "-" ? String(parts[3]) : ""
        self.init(step: String(parts[1]), errno: number, detail: detail)
    }

    /// How to fix each failure an operator can do something about.
    static func hint(step: String, errno: Int32) -> String {
        switch (step, errno) {
        case ("clone", EPERM), ("clone", EACCES):
            return "The kernel refused to create user namespaces. If unprivileged user namespaces are restricted, "
                + "run `sysctl -w kernel.apparmor_restrict_unprivileged_userns=0` (Ubuntu 23.10+) or "
                + "`sysctl -w kernel.unprivileged_userns_clone=1` (Debian); in a container, allow clone with "
                + "namespace flags (e.g. `--security-opt seccomp=unconfined`, or `--privileged`)."
        case ("clone", ENOSPC), ("clone", EUSERS):
            return "User namespaces are disabled or exhausted: run `sysctl -w user.max_user_namespaces=15000`."
        case ("clone", EINVAL):
            return "The kernel lacks a namespace type the space needs (user, pid, mount, net, ipc, uts, cgroup); "
                + "use Linux 4.6 or later built with CONFIG_USER_NS and CONFIG_*_NS."
        case ("uid_map", _), ("gid_map", _), ("setgroups", _):
            return "Mapping the space's root failed. Run the engine as root, or set hostUID/hostGID to the "
                + "engine's own uid/gid; check `/etc/subuid` is not required (the launcher maps one id only)."
        case ("mount_proc", EPERM):
            return "The host's /proc is partly hidden (as in a default Docker container), so the kernel forbids a "
                + "new proc: run the engine's container with `--privileged` or an unmasked /proc "
                + "(`--security-opt systempaths=unconfined`)."
        case ("bind_workspace", EACCES), ("open_workspace", EACCES):
            return "The engine's host user must be able to reach the workspace directory; check the permissions "
                + "of every directory above it."
        case ("bind_workspace", _), ("open_workspace", _):
            return "Check that the workspace directory exists, is a directory and is owned by the space's host id."
        case ("bind_ro", EACCES), ("open_bind", EACCES):
            return "The engine's host user must be able to reach each read-only bind source; check the "
                + "permissions of the directories above it."
        case ("bind_ro", _), ("open_bind", _):
            return "Check each read-only bind: the host path must exist and the inside path must be absolute, "
                + "normalised, and not under /usr, /workspace, /tmp, /dev or /proc."
        case ("exec", ENOENT):
            return "The program does not exist inside the space: only /usr (and /bin, /lib via /usr), "
                + "/etc/alternatives and the read-only binds are visible; bind the program or use its /usr path."
        case ("exec", EACCES):
            return "The program is not executable by the space's root, or lies on a noexec mount; check its mode."
        case ("seccomp", _):
            return "The kernel refused the space's seccomp filter: use a kernel built with CONFIG_SECCOMP_FILTER and "
                + "check that no container profile forbids seccomp(2) or prctl(PR_SET_SECCOMP); `spaces doctor` "
                + "shows the seccomp layer."
        case ("capabilities", _):
            return "Dropping the worker's capabilities failed inside its user namespace; `spaces doctor` shows the "
                + "capabilities layer. Report the step and error."
        case ("rlimits", _):
            return "A resource limit could not be set; check processLimit, openFileLimit and fileSizeLimitBytes."
        case ("cgroupns", _):
            return "The kernel refused a cgroup namespace: use Linux 4.6 or later built with CONFIG_CGROUPS."
        case ("chdir", _):
            return "The working directory must exist inside the space (for example /workspace or /tmp)."
        case ("args", _), ("spec", _):
            return "The space specification is invalid; fix the value named above."
        case ("launcher", _):
            return "Build the launcher (`swift build --product spaces-launcher`) and install it beside the "
                + "engine, or point SPACES_LAUNCHER at it."
        case ("spawn", _):
            return "The launcher could not be started; check that SPACES_LAUNCHER (or the launcher beside the "
                + "engine) is an executable file and that the engine has descriptors to spare (`ulimit -n`)."
        case (_, ENOMEM), (_, EMFILE), (_, ENFILE):
            return "The host is short of memory or descriptors; raise `ulimit -n` or free memory."
        default:
            return "This is unexpected on a Linux host with user namespaces; see docs/SANDBOX.md and report the "
                + "step and error."
        }
    }
}
