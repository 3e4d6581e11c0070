// swift-tools-version: 6.2
import PackageDescription

/// Every tool the suite ships: one tiny entry-point target each (for `swift run`,
/// per-tool tests and man pages) plus the multi-call `thinsr` binary that
/// `make install` links them to.
let tools = [
    "thinsr-create", "thinsr-attach", "thinsr-detach", "thinsr-destroy", "thinsr-stat", "thinsr-ls", "thinsr-set",
    "thinsr-extend", "thinsr-check", "thinsr-monitor", "thinsr-host",
    "thinvdi-create", "thinvdi-destroy", "thinvdi-stat", "thinvdi-ls", "thinvdi-attach", "thinvdi-detach",
    "thinvdi-snapshot", "thinvdi-clone", "thinvdi-revert", "thinvdi-compose", "thinvdi-resize", "thinvdi-set", "thinvdi-unset",
    "thinvdi-tree", "thinvdi-changed", "thinvdi-data-destroy", "thinvdi-export", "thinvdi-import", "thinvdi-serve",
    "thinvdi-introduce", "thinvdi-forget", "thinvdi-hydrate", "thinvdi-mirror", "thinvdi-mirror-stat", "thinvdi-mirror-stop",
]

let strictSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

var targets: [Target] = [
    // C modules: the only places C is imported.
    // No pkgConfig: its -L of the system's library directory would come before
    // make release's directory of static archives (sqlite, libaio) on the link line.
    .systemLibrary(name: "CDeviceMapper",
                   providers: [.apt(["libdevmapper-dev"]), .yum(["device-mapper-devel"])]),
    // liblvm2-dev ships no .pc file; the modulemap's `link` does the linking.
    .systemLibrary(name: "CLVM2Cmd", providers: [.apt(["liblvm2-dev"]), .yum(["lvm2-devel"])]),
    .systemLibrary(name: "CLibAIO", providers: [.apt(["libaio-dev"]), .yum(["libaio-devel"])]),
    .systemLibrary(name: "CSQLite", providers: [.apt(["libsqlite3-dev"]), .yum(["sqlite-devel"])]),
    .target(name: "CThinShims", dependencies: ["CDeviceMapper", "CSQLite"]),

    // The operations log (-v, THINSR_LOG) every layer below the commands writes to.
    .target(name: "ThinTrace", dependencies: [.product(name: "Logging", package: "swift-log")]),

    // Typed wrappers.
    .target(name: "ThinDeviceMapper", dependencies: ["CDeviceMapper", "CThinShims", "ThinTrace"]),
    // ThinTools: where no liblvm2cmd loads, LVM is its `lvm` command, run as every program is.
    .target(name: "ThinLVM", dependencies: ["CLVM2Cmd", "ThinTools", "ThinTrace"]),
    .target(name: "ThinTools", dependencies: [
        "ThinTrace",
        .product(name: "Subprocess", package: "swift-subprocess"),
        .product(name: "SystemPackage", package: "swift-system"),
    ]),

    // The core: SRs, volumes, catalog, transactions, naming, locking.
    .target(name: "ThinCore", dependencies: [
        "ThinDeviceMapper", "ThinLVM", "ThinTools", "ThinTrace", "CSQLite", "CLibAIO", "CThinShims",
        .product(name: "SystemPackage", package: "swift-system"),
    ]),

    // Argument parsing and output.
    .target(name: "ThinCommands", dependencies: [
        "ThinCore", "ThinTrace",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
        .product(name: "Logging", package: "swift-log"),
    ]),

    // The multi-call binary: dispatches on basename(argv[0]).
    .executableTarget(name: "thinsr", dependencies: ["ThinCommands"]),

    .testTarget(name: "ThinDeviceMapperTests", dependencies: ["ThinDeviceMapper", "ThinTrace"]),
    .testTarget(name: "ThinCoreTests", dependencies: ["ThinCore", "ThinLVM", "ThinTools"]),
    .testTarget(name: "ThinCommandsTests", dependencies: [
        "ThinCommands", "ThinCore",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
    ]),
]
targets += tools.map { .executableTarget(name: $0, dependencies: ["ThinCommands"]) }

for index in targets.indices where targets[index].type != .system {
    targets[index].swiftSettings = (targets[index].swiftSettings ?? []) + strictSettings
}

let package = Package(
    name: "thinsr",
    platforms: [.macOS(.v15)],
    products: [.executable(name: "thinsr", targets: ["thinsr"])]
        + tools.map { .executable(name: $0, targets: [$0]) },
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-system", from: "1.8.1"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        // Without its Foundation trait: the tools stay free of full Foundation.
        .package(url: "https://github.com/swiftlang/swift-subprocess", from: "1.0.2", traits: []),
    ],
    targets: targets,
    swiftLanguageModes: [.v6]
)
