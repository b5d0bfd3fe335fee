// swift-tools-version:6.1
// Benchmarks for Starling, kept out of the root package so that `swift build` and `scripts/run.sh`
// never build the benchmark framework. Run them through `benchmarks/guard.sh` (see README.md).
import PackageDescription

let package = Package(
    name: "starling-benchmarks",
    platforms: [.macOS(.v14)],
    dependencies: [
        .package(name: "starling", path: ".."),
        .package(url: "https://github.com/ordo-one/benchmark.git", from: "1.38.1", traits: ["MallocInterposer"]),
        .package(url: "https://github.com/ordo-one/malloc-interposer.git", from: "1.6.1"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
    ],
    targets: [
        .executableTarget(
            name: "DeliveryBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "MallocInterposerSwift", package: "malloc-interposer"),
                .product(name: "StarlingServer", package: "starling"),
                .product(name: "StarlingBroker", package: "starling"),
                .product(name: "StarlingSTOMP", package: "starling"),
                .product(name: "StarlingWebSocket", package: "starling"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Benchmarks/DeliveryBenchmarks",
            swiftSettings: [.swiftLanguageMode(.v6)],
            plugins: [
                .plugin(name: "BenchmarkPlugin", package: "benchmark"),
            ]
        ),
    ]
)
