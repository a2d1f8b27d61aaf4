#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// Which isolation layers this host can give a space (docs/SANDBOX.md, security.md "Isolation of a space"),
/// found by `Sandbox.probe()` without starting one. The engine reports it from `initialize` and refuses spaces
/// when a required layer is missing.
public struct IsolationReport: Sendable, Hashable, Codable {
    /// User namespaces can be created by the engine (the other namespaces are created inside one).
    public var user: Bool
    /// Mount namespaces.
    public var mount: Bool
    /// PID namespaces.
    public var pid: Bool
    /// Network namespaces.
    public var net: Bool
    /// IPC namespaces.
    public var ipc: Bool
    /// UTS (host name) namespaces.
    public var uts: Bool
    /// The kernel offers seccomp filters (a space's syscall filter needs them).
    public var seccomp: Bool
    /// Spaces run with every capability dropped. Not yet implemented by the launcher, so always false.
    public var capabilitiesDropped: Bool
    /// The cgroup layout under /sys/fs/cgroup: `v2`, `v1` or `none`.
    public var cgroup: String
    /// The launcher this engine would use, if one was found.
    public var launcherPath: String?
    /// Each missing or degraded layer, with how to fix it. Empty when everything is available.
    public var problems: [String]

    public init(
        user: Bool, mount: Bool, pid: Bool, net: Bool, ipc: Bool, uts: Bool, seccomp: Bool,
        capabilitiesDropped: Bool, cgroup: String, launcherPath: String?, problems: [String]
    ) {
        self.user = user
        self.mount = mount
        self.pid = pid
        self.net = net
        self.ipc = ipc
        self.uts = uts
        self.seccomp = seccomp
        self.capabilitiesDropped = capabilitiesDropped
        self.cgroup = cgroup
        self.launcherPath = launcherPath
        self.problems = problems
    }

    /// Whether a space can be started at all: every namespace, and a launcher.
    public var canLaunch: Bool {
        user && mount && pid && net && ipc && uts && launcherPath != nil
    }

    static func probe(launcherPath: String?) -> IsolationReport {
        var problems: [String] = []
        let privileged = geteuid() == 0
        func setting(_ path: String) -> Int? {
            readSmallFile(path).flatMap { Int($0.filter { !$0.isWhitespace }) }
        }

        var user = pathExists("/proc/self/ns/user")
        if !user {
            problems.append("user namespaces: the kernel has none; use a kernel built with CONFIG_USER_NS")
        } else if setting("/proc/sys/user/max_user_namespaces") == 0 {
            user = false
            problems.append("user namespaces: disabled; run `sysctl -w user.max_user_namespaces=15000`")
        } else if !privileged && setting("/proc/sys/kernel/unprivileged_userns_clone") == 0 {
            user = false
            problems.append(
                "user namespaces: disabled for unprivileged users; run "
                    + "`sysctl -w kernel.unprivileged_userns_clone=1`, or run the engine as root")
        } else if !privileged && setting("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == 1 {
            user = false
            problems.append(
                "user namespaces: restricted by AppArmor; run "
                    + "`sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`, or run the engine as root")
        }

        func namespace(_ file: String, _ name: String, _ option: String) -> Bool {
            guard pathExists("/proc/self/ns/\(file)") else {
                problems.append("\(name) namespaces: the kernel has none; use a kernel built with \(option)")
                return false
            }
            return user
        }
        let mount = namespace("mnt", "mount", "CONFIG_NAMESPACES")
        let pid = namespace("pid", "pid", "CONFIG_PID_NS")
        let net = namespace("net", "network", "CONFIG_NET_NS")
        let ipc = namespace("ipc", "ipc", "CONFIG_IPC_NS")
        let uts = namespace("uts", "uts", "CONFIG_UTS_NS")
        _ = namespace("cgroup", "cgroup", "CONFIG_CGROUPS")

        let seccomp = pathExists("/proc/sys/kernel/seccomp/actions_avail")
        if !seccomp {
            problems.append("seccomp: unavailable; use a kernel built with CONFIG_SECCOMP_FILTER")
        }

        let cgroup: String
        if pathExists("/sys/fs/cgroup/cgroup.controllers") {
            cgroup = "v2"
        } else if pathExists("/sys/fs/cgroup/memory") {
            cgroup = "v1"
        } else {
            cgroup = "none"
            problems.append(
                "cgroups: none mounted at /sys/fs/cgroup, so memory, process and CPU limits are unavailable; "
                    + "mount cgroup2 there (`mount -t cgroup2 none /sys/fs/cgroup`)")
        }

        if launcherPath == nil {
            problems.append(
                "launcher: \(Sandbox.launcherName) not found; build it (`swift build --product spaces-launcher`) "
                    + "and put it beside the engine, or set SPACES_LAUNCHER")
        }

        return IsolationReport(
            user: user, mount: mount, pid: pid, net: net, ipc: ipc, uts: uts, seccomp: seccomp,
            capabilitiesDropped: false, cgroup: cgroup, launcherPath: launcherPath, problems: problems)
    }
}
