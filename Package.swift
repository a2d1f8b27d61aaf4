// swift-tools-version:6.1
import PackageDescription

let strictSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "agent-spaces",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "spaces", targets: ["spaces"]),
        .executable(name: "spaces-launcher", targets: ["spaces-launcher"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
    ],
    targets: [
        // Wire types: JSON values, JSON-RPC envelope, operations, events, errors, schema validation. No I/O.
        .target(name: "SpacesProtocol", swiftSettings: strictSettings),
        // The pure policy model: presets, merging, validation, decisions. No I/O.
        .target(name: "SpacesPolicy", dependencies: ["SpacesProtocol"], swiftSettings: strictSettings),
        // C: the space launcher (namespaces, mounts, pivot_root, init). Linked into the launcher executable.
        // Linked statically: a dynamically linked launcher loads the Swift runtime SwiftPM's link step adds (plus
        // libstdc++), which measured 1.3 ms of the ~3 ms a space takes to start.
        .target(
            name: "CSandbox",
            linkerSettings: [
                .linkedLibrary("seccomp"), .linkedLibrary("cap"),
                .unsafeFlags(["-static-executable"], .when(platforms: [.linux])),
            ]
        ),
        .executableTarget(name: "spaces-launcher", dependencies: ["CSandbox"]),
        // Swift face of isolation: spawn a space through the launcher, probe the host, kill a space.
        .target(
            name: "SpacesSandbox",
            dependencies: [.product(name: "Logging", package: "swift-log")],
            swiftSettings: strictSettings
        ),
        // The operation interpreter: spaces, runs, batches, workers, state directory.
        .target(
            name: "SpacesEngine",
            dependencies: [
                "SpacesProtocol", "SpacesPolicy", "SpacesSandbox",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            resources: [.copy("Resources/worker.ts"), .copy("Resources/capabilities.js")],
            swiftSettings: strictSettings
        ),
        // Transports: stdio JSON-RPC framing, routing and concurrency.
        .target(
            name: "SpacesServer",
            dependencies: ["SpacesEngine", "SpacesProtocol", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strictSettings
        ),
        // The golden conformance runner: drives any engine command through its stdin.
        .target(name: "SpacesConformance", dependencies: ["SpacesProtocol"], swiftSettings: strictSettings),
        .executableTarget(
            name: "spaces",
            dependencies: [
                "SpacesServer", "SpacesEngine", "SpacesConformance", "SpacesProtocol", "SpacesSandbox",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(name: "SpacesProtocolTests", dependencies: ["SpacesProtocol"], swiftSettings: strictSettings),
        .testTarget(name: "SpacesSandboxTests", dependencies: ["SpacesSandbox"], swiftSettings: strictSettings),
        .testTarget(
            name: "SpacesPolicyTests", dependencies: ["SpacesPolicy", "SpacesProtocol"], swiftSettings: strictSettings),
        .testTarget(
            name: "SpacesEngineTests", dependencies: ["SpacesEngine", "SpacesProtocol"], swiftSettings: strictSettings),
        // Hostile code run inside real spaces through the protocol: every attack must fail, the host unchanged.
        .testTarget(
            name: "SpacesAttackTests", dependencies: ["SpacesConformance", "SpacesProtocol"],
            swiftSettings: strictSettings),
        .testTarget(
            name: "SpacesConformanceTests",
            dependencies: ["SpacesConformance", "SpacesProtocol"],
            swiftSettings: strictSettings
        ),
    ]
)
