#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// Which isolation layers this host can give a space (docs/SANDBOX.md, security.md "Isolation of a space"),
/// found by `Sandbox.probe()` without starting one. The engine reports it from `initialize` and refuses spaces
/// when a required layer is missing.
public struct IsolationReport: Sendable, Hashable, Codable {
    /// One isolation layer: whether this host has it, what was found, and how to get it when it is missing.
    public struct Layer: Sendable, Hashable, Codable {
        /// `user namespaces`, `capabilities`, `seccomp`, `cgroup memory`, `cgroup pids`, `cgroup cpu` or
        /// `launcher`.
        public var name: String
        /// The layer works here (for the launcher's layers: the launcher tried it).
        public var present: Bool
        /// What was found: the setting, the cgroup directory, or the error.
        public var detail: String
        /// The command or setting that provides the layer; nil when it is present.
        public var fix: String?

        public init(name: String, present: Bool, detail: String, fix: String?) {
            self.name = name
            self.present = present
            self.detail = detail
            self.fix = fix
        }
    }

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
    /// The launcher loaded its seccomp filter here (and the filter denied what it should).
    public var seccomp: Bool
    /// The launcher dropped every capability here, as it does for each worker.
    public var capabilitiesDropped: Bool
    /// What the launcher can use for a space's memory and pids limits: `v2` when both controllers work through
    /// cgroup v2, `v1` when both work and one is a v1 hierarchy, `none` when either does not work.
    public var cgroup: String
    /// The launcher this engine would use, if one was found.
    public var launcherPath: String?
    /// Every layer, present or not, in a fixed order, each missing one with its fix.
    public var layers: [Layer]
    /// Each missing or degraded layer, with how to fix it, as one line. Empty when everything is available.
    public var problems: [String]

    public init(
        user: Bool, mount: Bool, pid: Bool, net: Bool, ipc: Bool, uts: Bool, seccomp: Bool,
        capabilitiesDropped: Bool, cgroup: String, launcherPath: String?, layers: [Layer] = [], problems: [String]
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
        self.layers = layers
        self.problems = problems
    }

    /// Whether a space can be started at all: every namespace, and a launcher.
    public var canLaunch: Bool {
        user && mount && pid && net && ipc && uts && launcherPath != nil
    }

    /// The layer called `name`, if the report has it.
    public func layer(_ name: String) -> Layer? {
        layers.first { $0.name == name }
    }

    /// Reads the user-namespace settings, and runs `spaces-launcher --probe` (about 10 ms) for what can only be
    /// known by trying: creating the namespaces, dropping capabilities, loading the filter, making and joining
    /// a cgroup in each controller.
    static func probe(launcherPath: String?) -> IsolationReport {
        let launcherLines = launcherPath.flatMap(runLauncherProbe)
        return assemble(
            launcherPath: launcherPath, launcherLines: launcherLines,
            setting: { readSmallFile($0).flatMap { Int($0.filter { !$0.isWhitespace }) } },
            privileged: geteuid() == 0)
    }

    /// Builds the report from the launcher's probe lines (`<layer> <ok|unavailable> <detail>`, nil when the
    /// launcher could not be run) and the host's settings. Separate from `probe` so tests can feed it a host.
    static func assemble(
        launcherPath: String?,
        launcherLines: [String: (ok: Bool, detail: String)]?,
        setting: (String) -> Int?,
        privileged: Bool
    ) -> IsolationReport {
        var layers: [Layer] = []
        let notTried = "not tried: the launcher was not found"
        let buildLauncher =
            "build the launcher (`swift build --product spaces-launcher`) and put it beside the engine, or set "
            + "SPACES_LAUNCHER"

        // User namespaces: the settings explain a refusal; the launcher's clone is the proof.
        let userFix: String?
        let userDetail: String
        if !pathExists("/proc/self/ns/user") {
            userDetail = "the kernel has no user namespaces"
            userFix = "use a kernel built with CONFIG_USER_NS"
        } else if setting("/proc/sys/user/max_user_namespaces") == 0 {
            userDetail = "user.max_user_namespaces is 0"
            userFix = "run `sysctl -w user.max_user_namespaces=15000`"
        } else if !privileged && setting("/proc/sys/kernel/unprivileged_userns_clone") == 0 {
            userDetail = "kernel.unprivileged_userns_clone is 0 and the engine is not root"
            userFix = "run `sysctl -w kernel.unprivileged_userns_clone=1`, or run the engine as root"
        } else if !privileged && setting("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == 1 {
            userDetail = "kernel.apparmor_restrict_unprivileged_userns is 1 and the engine is not root"
            userFix = "run `sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`, or run the engine as root"
        } else if let namespaces = launcherLines?["namespaces"], !namespaces.ok {
            userDetail = "the launcher could not create them: \(namespaces.detail)"
            let number = Int32(namespaces.detail.split(separator: " ").first ?? "") ?? 0
            userFix = SandboxError.hint(step: "clone", errno: number)
        } else {
            userDetail = launcherLines == nil ? "allowed by the settings (\(notTried))" : "created by the launcher"
            userFix = nil
        }
        let user = userFix == nil
        layers.append(Layer(name: "user namespaces", present: user, detail: userDetail, fix: userFix))

        var problems: [String] = []
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

        // What the launcher tried in a child made like a space.
        func launcherLayer(_ key: String, name: String, works: String = "", fix: (String) -> String) -> Layer {
            guard let lines = launcherLines else {
                return Layer(name: name, present: false, detail: notTried, fix: buildLauncher)
            }
            guard let line = lines[key] else {
                return Layer(name: name, present: false, detail: "the launcher did not report it", fix: buildLauncher)
            }
            let detail = line.ok && line.detail == "-" ? works : line.detail
            return Layer(name: name, present: line.ok, detail: detail, fix: line.ok ? nil : fix(line.detail))
        }
        let capabilities = launcherLayer(
            "capabilities", name: "capabilities", works: "a probe space dropped every capability and locked securebits"
        ) { _ in
            "the launcher drops capabilities inside a user namespace; make user namespaces work first"
        }
        let seccomp = launcherLayer(
            "seccomp", name: "seccomp", works: "a probe space loaded the filter and it denied unshare"
        ) { _ in
            pathExists("/proc/sys/kernel/seccomp/actions_avail")
                ? "the kernel refused the filter; check that nothing (a container runtime's profile) forbids "
                    + "seccomp(2) or prctl(PR_SET_SECCOMP)"
                : "use a kernel built with CONFIG_SECCOMP_FILTER"
        }
        layers += [capabilities, seccomp]

        var cgroupLayers: [String: Layer] = [:]
        for controller in ["memory", "pids", "cpu"] {
            let layer = launcherLayer("cgroup \(controller)", name: "cgroup \(controller)") { detail in
                cgroupFix(controller: controller, detail: detail)
            }
            cgroupLayers[controller] = layer
            layers.append(layer)
        }
        let cgroup: String
        if let memory = cgroupLayers["memory"], let pids = cgroupLayers["pids"], memory.present, pids.present {
            let version2 = [memory, pids].allSatisfy { $0.detail.split(separator: " ").dropFirst().first == "v2" }
            cgroup = version2 ? "v2" : "v1"
        } else {
            cgroup = "none"
        }

        layers.append(
            Layer(
                name: "launcher", present: launcherPath != nil,
                detail: launcherPath ?? "\(Sandbox.launcherName) was not found",
                fix: launcherPath == nil ? buildLauncher : nil))

        problems =
            layers.compactMap { layer in
                layer.fix.map { "\(layer.name): \(layer.detail); fix: \($0)" }
            } + problems
        return IsolationReport(
            user: user, mount: mount, pid: pid, net: net, ipc: ipc, uts: uts, seccomp: seccomp.present,
            capabilitiesDropped: capabilities.present, cgroup: cgroup, launcherPath: launcherPath, layers: layers,
            problems: problems)
    }

    /// How to get a cgroup controller the launcher could not use, from the reason it gave.
    static func cgroupFix(controller: String, detail: String) -> String {
        if detail.hasPrefix("no \(controller) controller") {
            return "mount the \(controller) controller: on cgroup v2 it must be enabled in /sys/fs/cgroup "
                + "(`echo +\(controller) > /sys/fs/cgroup/cgroup.subtree_control`); on v1, "
                + "`mount -t cgroup -o \(controller) cgroup /sys/fs/cgroup/\(controller)`"
        }
        if detail.contains("(errno \(EBUSY))") && detail.hasPrefix("v2") {
            return "run the engine in a cgroup of its own with the controllers delegated to it (systemd: "
                + "`systemd-run -p Delegate=yes --scope spaces serve`, or Delegate=yes in its unit)"
        }
        if detail.contains("(errno \(EACCES))") || detail.contains("(errno \(EROFS))")
            || detail.contains("(errno \(EPERM))")
        {
            return "let the engine write its cgroup: run it as root with /sys/fs/cgroup mounted read-write (in a "
                + "container: `--cgroupns=private` and a writable cgroup mount, or `--privileged`), or delegate "
                + "its cgroup to its user (systemd Delegate=yes)"
        }
        return "check that the engine's cgroup under /sys/fs/cgroup is writable and the \(controller) controller "
            + "is enabled there"
    }

    /// Runs `launcher --probe` and parses its lines by layer (`cgroup memory`, not `cgroup`, for cgroups); nil
    /// when it cannot be run.
    static func runLauncherProbe(_ launcher: String) -> [String: (ok: Bool, detail: String)]? {
        guard let bytes = Sandbox.runLauncher(launcher, mode: "--probe") else {
            return nil
        }
        var lines: [String: (ok: Bool, detail: String)] = [:]
        for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") {
            var words = line.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: false).map(String.init)
            if words.first == "cgroup" {
                // `cgroup <controller> <ok|unavailable> <detail>`
                let rest = words.count == 3 ? words[2].split(separator: " ", maxSplits: 1).map(String.init) : []
                guard words.count == 3, rest.count >= 1 else {
                    continue
                }
                words = ["cgroup \(words[1])", rest[0], rest.count == 2 ? rest[1] : "-"]
            }
            guard words.count >= 2, words[1] == "ok" || words[1] == "unavailable" else {
                continue
            }
            lines[words[0]] = (words[1] == "ok", words.count == 3 ? words[2] : "-")
        }
        return lines
    }
}
