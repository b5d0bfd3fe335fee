// swift-tools-version:6.1
// libFuzzer targets for Starling's codecs (docs/fuzzing.md). Built by scripts/fuzz.sh with
// `swift build --sanitize=fuzzer --sanitize=address`; not part of the main package, so `swift build` and
// `swift test` at the repository root never see it.
import PackageDescription

let package = Package(
    name: "starling-fuzz",
    dependencies: [
        .package(name: "starling", path: ".."),
        // The main package's NIO, named again so the targets here can use NIOCore directly (same version range).
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
    ],
    targets: [
        // zlib itself, as an independent reference for the inflater (the main package's CZlib is not a product).
        .systemLibrary(name: "CZlibReference", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        .target(
            name: "FuzzSupport",
            dependencies: [.product(name: "NIOCore", package: "swift-nio")]
        ),
        .executableTarget(
            name: "FuzzSTOMPParser",
            dependencies: [
                "FuzzSupport",
                .product(name: "StarlingSTOMP", package: "starling"),
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        .executableTarget(
            name: "FuzzWebSocketFrames",
            dependencies: [
                "FuzzSupport",
                .product(name: "StarlingWebSocket", package: "starling"),
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        .executableTarget(
            name: "FuzzDeflate",
            dependencies: [
                "FuzzSupport",
                "CZlibReference",
                .product(name: "StarlingWebSocket", package: "starling"),
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
