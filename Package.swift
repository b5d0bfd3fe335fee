// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "starling",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "starling", targets: ["starling"]),
        .executable(name: "starling-loadtest", targets: ["starling-loadtest"]),
        .executable(name: "starling-feed", targets: ["starling-feed"]),
        .library(name: "StarlingSTOMP", targets: ["StarlingSTOMP"]),
        .library(name: "StarlingWebSocket", targets: ["StarlingWebSocket"]),
        .library(name: "StarlingBroker", targets: ["StarlingBroker"]),
        .library(name: "StarlingServer", targets: ["StarlingServer"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-atomics.git", from: "1.3.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.2.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
    ],
    targets: [
        .systemLibrary(
            name: "CZlib",
            pkgConfig: "zlib",
            providers: [.apt(["zlib1g-dev"])]
        ),
        .systemLibrary(
            name: "CSQLite",
            pkgConfig: "sqlite3",
            providers: [.apt(["libsqlite3-dev"])]
        ),
        .systemLibrary(
            name: "COpenSSL",
            pkgConfig: "libcrypto",
            providers: [.apt(["libssl-dev"])]
        ),
        .target(
            name: "StarlingSTOMP",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        .target(
            name: "StarlingWebSocket",
            dependencies: [
                "CZlib",
                "COpenSSL",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
        .target(
            name: "StarlingBroker",
            dependencies: [
                "StarlingSTOMP",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Atomics", package: "swift-atomics"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "StarlingStore",
            dependencies: [
                "CSQLite",
                "StarlingBroker",
                "StarlingSTOMP",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ]
        ),
        .target(
            name: "StarlingServer",
            dependencies: [
                "StarlingSTOMP",
                "StarlingWebSocket",
                "StarlingBroker",
                "StarlingStore",
                "COpenSSL",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .executableTarget(
            name: "starling",
            dependencies: [
                "StarlingServer",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ]
        ),
        .target(
            name: "StarlingLoadtestKit",
            dependencies: [
                "StarlingSTOMP",
                "StarlingWebSocket",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "Atomics", package: "swift-atomics"),
            ],
            path: "loadtest/Kit"
        ),
        .executableTarget(
            name: "starling-loadtest",
            dependencies: [
                "StarlingLoadtestKit",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "loadtest/Main"
        ),
        .executableTarget(
            name: "starling-feed",
            dependencies: [.product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "feed"
        ),
        .testTarget(name: "StarlingSTOMPTests", dependencies: ["StarlingSTOMP"]),
        .testTarget(
            name: "StarlingLoadtestKitTests",
            dependencies: ["StarlingLoadtestKit"],
            path: "loadtest/Tests"
        ),
        .testTarget(
            name: "StarlingWebSocketTests",
            dependencies: [
                "StarlingWebSocket",
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "StarlingBrokerTests",
            dependencies: [
                "StarlingBroker",
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "StarlingStoreTests",
            dependencies: [
                "StarlingStore",
                "StarlingBroker",
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "StarlingServerTests",
            dependencies: [
                "StarlingServer",
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
