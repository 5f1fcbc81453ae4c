// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "DockerParallel",
    platforms: [.macOS(.v14)],
    products: [
        .library(name: "DockerParallel", targets: ["DockerParallel"]),
        .library(name: "DockerParallelCore", targets: ["DockerParallelCore"]),
        .library(name: "LocalProvider", targets: ["LocalProvider"]),
        .library(name: "DockerEngineProvider", targets: ["DockerEngineProvider"]),
        .library(name: "SwarmProvider", targets: ["SwarmProvider"]),
        .library(name: "KubernetesProvider", targets: ["KubernetesProvider"]),
        .library(name: "ECSProvider", targets: ["ECSProvider"]),
        .library(name: "DockerParallelTestKit", targets: ["DockerParallelTestKit"]),
        .executable(name: "dockerparallel", targets: ["dockerparallel"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.6.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-certificates", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-crypto", "3.12.3"..<"5.0.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-asn1", from: "1.7.4"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
    ],
    targets: [
        // Value types, protocols, wire messages and the pure queue state machine. No networking.
        .target(
            name: "DockerParallelCore",
            dependencies: [
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Framing and connections over NIO, shared by server, worker and client.
        .target(
            name: "DockerParallelWire",
            dependencies: [
                "DockerParallelCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The broker.
        .target(
            name: "DockerParallelServer",
            dependencies: [
                "DockerParallelCore", "DockerParallelWire",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "GRDBSQLite", package: "GRDB.swift"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
            ]
        ),
        // The worker runtime.
        .target(
            name: "DockerParallelWorker",
            dependencies: [
                "DockerParallelCore", "DockerParallelWire",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "DequeModule", package: "swift-collections"),
            ]
        ),
        // What users import.
        .target(
            name: "DockerParallel",
            dependencies: [
                "DockerParallelCore", "DockerParallelWire", "DockerParallelServer", "DockerParallelWorker",
                "LocalProvider",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        // The embedded default: server and workers as processes on this machine.
        .target(
            name: "LocalProvider",
            dependencies: ["DockerParallelCore", .product(name: "Logging", package: "swift-log")]
        ),
        // REST plumbing every cloud provider needs: a client over a transport seam, retries with
        // jittered backoff, label selectors, JSON helpers and recorded-response testing. Internal.
        .target(
            name: "ProviderKit",
            dependencies: [
                "DockerParallelCore",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        // Server and workers as containers, through the Docker Engine API.
        .target(
            name: "DockerEngineProvider",
            dependencies: [
                "DockerParallelCore", "ProviderKit",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Server and workers as Docker Swarm services, on the Docker provider's Engine client.
        .target(
            name: "SwarmProvider",
            dependencies: ["DockerParallelCore", "ProviderKit", "DockerEngineProvider", .product(name: "Logging", package: "swift-log")]
        ),
        // Server and workers as Kubernetes objects (a Deployment, a Service, worker pods), through
        // the API server's REST API, configured by kubeconfig or a pod's service account.
        .target(
            name: "KubernetesProvider",
            dependencies: [
                "DockerParallelCore", "ProviderKit", "DockerEngineProvider",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Yams", package: "Yams"),
            ]
        ),
        // Server and workers as AWS ECS Fargate (and Fargate Spot) tasks, through the AWS APIs,
        // signed with ProviderKit's SigV4.
        .target(
            name: "ECSProvider",
            dependencies: ["DockerParallelCore", "ProviderKit", "DockerEngineProvider", .product(name: "Logging", package: "swift-log")]
        ),
        // The conformance kit for provider and container authors.
        .target(
            name: "DockerParallelTestKit",
            dependencies: ["DockerParallel", "DockerParallelCore"]
        ),
        // The CLI; also the server and worker entry point.
        .executableTarget(
            name: "dockerparallel",
            dependencies: [
                "DockerParallel", "DockerParallelCore", "DockerParallelServer", "DockerParallelWorker", "DockerEngineProvider",
                "SwarmProvider", "KubernetesProvider", "ECSProvider",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // An example program whose own executable is the worker for its Swift tasks.
        .executableTarget(
            name: "squares-example",
            dependencies: ["DockerParallel"],
            path: "Examples/Squares"
        ),
        // DockerParallel's side of the benchmark harness (bench/run).
        .executableTarget(
            name: "dockerparallel-bench",
            dependencies: ["DockerParallel", "DockerParallelCore", "DockerEngineProvider", "SwarmProvider", "KubernetesProvider", "ECSProvider"]),
        .testTarget(name: "DockerParallelCoreTests", dependencies: ["DockerParallelCore"]),
        .testTarget(
            name: "DockerParallelWireTests",
            dependencies: [
                "DockerParallelCore", "DockerParallelWire",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "DockerParallelTests",
            dependencies: [
                "DockerParallel", "DockerParallelCore", "DockerParallelTestKit", "DockerParallelServer", "DockerParallelWorker",
                "DockerParallelWire", "DockerEngineProvider",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .testTarget(
            name: "ProviderKitTests",
            dependencies: ["ProviderKit", .product(name: "NIOHTTP1", package: "swift-nio")],
            exclude: ["aws4_testsuite"]
        ),
        .testTarget(
            name: "DockerEngineProviderTests",
            dependencies: [
                "DockerEngineProvider", "ProviderKit", "DockerParallelCore",
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "SwarmProviderTests",
            dependencies: [
                "SwarmProvider", "DockerEngineProvider", "ProviderKit", "DockerParallelCore", "DockerParallel", "DockerParallelTestKit",
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "KubernetesProviderTests",
            dependencies: [
                "KubernetesProvider", "DockerEngineProvider", "ProviderKit", "DockerParallelCore", "DockerParallel", "DockerParallelTestKit",
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Yams", package: "Yams"),
            ],
            exclude: ["Harness"]
        ),
        .testTarget(
            name: "ECSProviderTests",
            dependencies: [
                "ECSProvider", "ProviderKit", "DockerParallelCore", "DockerParallel", "DockerParallelTestKit",
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            exclude: ["Harness"]
        ),
        .testTarget(name: "CLITests", dependencies: ["DockerParallel", "DockerParallelCore", "DockerParallelTestKit"]),
    ]
)
