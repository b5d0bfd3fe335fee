import Atomics
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import ServiceLifecycle
import StarlingBroker
import StarlingSTOMP
import StarlingStore
import StarlingWebSocket

/// The server: HTTP + WebSocket and plain TCP STOMP listeners over one event loop group and one broker.
/// The executable and the tests build it the same way: `StarlingServer(configuration:logger:)`, then `run()` as a
/// `Service` (or `start()` / `shutdown()` directly).
public final class StarlingServer: Service, Sendable {
    public struct BoundAddresses: Sendable {
        public var http: SocketAddress
        public var stomp: SocketAddress?
        /// The `[tls]` listeners: HTTPS + `wss://`, and STOMP over TLS.
        public var https: SocketAddress?
        public var stompTLS: SocketAddress?
    }

    public let configuration: ServerConfiguration
    public let broker: Broker
    let logger: Logger
    private let group: MultiThreadedEventLoopGroup
    private let draining = ManagedAtomic(false)
    private let sessionCounter = ManagedAtomic<UInt64>(0)
    private let nodeTag: String
    /// HTTP (and HTTPS) listeners stay open while draining, to answer /healthz with 503; STOMP ones close at once.
    private let listeners = NIOLockedValueBox<(http: [any Channel], stomp: [any Channel])>(([], []))
    private let stopped = ManagedAtomic(false)
    /// One per event loop, in the broker's loop order; each is touched only on its loop.
    let perLoop: PerLoopResources
    /// What new connections start from; replaced by a configuration reload.
    let template: NIOLockedValueBox<STOMPConnection.SharedSettings>
    private var connectionTemplate: STOMPConnection.SharedSettings { self.template.withLockedValue { $0 } }
    private let store: SQLiteMessageStore?
    /// Where CONNECTs' passwords are checked (PBKDF2 is too slow for an event loop); nil without a users file.
    let authPool: NIOThreadPool?
    /// The `[tls]` certificate and key, read at start and on `reload()`; nil without `[tls]`.
    let tls: TLSContextHolder?
    /// `GET /metrics`.
    let metrics: ServerMetrics
    /// `/api/v1/`; its token changes with a reload.
    let admin: AdminAPI
    /// Open connections, against `max-connections` and `max-connections-per-ip`.
    let connections: ConnectionCounter

    /// Why the server cannot start (an unusable data directory, a damaged store).
    public struct StartError: Error, CustomStringConvertible {
        public var description: String
    }

    /// Opens the store (with `storage = sqlite`) and builds the broker; `start()` recovers the store's contents.
    public init(configuration: ServerConfiguration, logger: Logger) throws {
        self.configuration = configuration
        self.logger = logger
        self.connections = ConnectionCounter(
            maxTotal: configuration.limits.maxConnections, maxPerAddress: configuration.limits.maxConnectionsPerAddress
        )
        let authenticator = try Self.makeAuthenticator(configuration)
        if let settings = configuration.tls {
            do throws(TLSContextHolder.LoadError) {
                self.tls = try TLSContextHolder(settings)
            } catch {
                throw StartError(description: error.description)
            }
        } else {
            self.tls = nil
        }
        self.authPool = authenticator.map { _ in NIOThreadPool(numberOfThreads: 1) }
        self.authPool?.start()
        var store: SQLiteMessageStore?
        if configuration.storage == .sqlite {
            do {
                store = try SQLiteMessageStore(
                    directory: configuration.dataDirectory, sync: configuration.fsync,
                    syncInterval: Double(configuration.fsyncIntervalMilliseconds) / 1000
                )
            } catch {
                throw StartError(description: "storage: \(error.description)")
            }
        }
        self.store = store
        let metrics = ServerMetrics()
        self.metrics = metrics
        store?.commitObserver = StoreCommitHistograms(metrics)
        self.group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, configuration.eventLoopCount))
        self.broker = Broker(
            eventLoops: self.group.makeIterator().map { $0 },
            queuePolicies: QueuePolicies(defaultPolicy: configuration.queues, rules: configuration.queuePolicyRules),
            historyPolicies: HistoryPolicies(roomDefault: configuration.rooms, rules: configuration.historyPolicyRules),
            roomLimits: RoomLimits(maxMetaBytes: configuration.limits.maxPresenceMetaBytes),
            deliveryPolicies: DeliveryPolicies(rules: configuration.deliveryPolicyRules),
            idempotency: IdempotencyTable(
                windowMilliseconds: Int64(configuration.idempotencyWindowMilliseconds), capacity: configuration.idempotencyMaxKeys
            ),
            store: store
        )
        self.nodeTag = String(UInt32.random(in: 0x1000_0000...UInt32.max), radix: 16)
        self.template = NIOLockedValueBox(Self.connectionTemplate(configuration, authenticator: authenticator, pool: self.authPool))
        self.admin = AdminAPI(token: configuration.adminToken, maxBodySize: configuration.limits.maxBodySize * 2 + 64 * 1024)
        self.perLoop = PerLoopResources(
            loops: self.broker.loops.map(\.eventLoop), memoryLevel: configuration.webSocket.deflateMemoryLevel, metrics: metrics
        )
        let latency = DeliveryLatencyHistogram(metrics.deliveryLatency)
        for loop in self.broker.loops { loop.latencyRecorder = latency }
    }

    // MARK: Service

    public func run() async throws {
        _ = try await self.start()
        // Returns when the ServiceGroup starts a graceful shutdown (SIGTERM/SIGINT), throws on cancellation.
        try? await gracefulShutdown()
        await self.shutdown()
    }

    /// Recovers the store, binds the listeners and logs the `listening` line. Ports of 0 are bound to free ports.
    public func start() async throws -> BoundAddresses {
        if let store = self.store {
            let began = NIODeadline.now()
            let contents: StoreContents
            do {
                contents = try store.recover()
            } catch {
                throw StartError(description: "storage: \(error.description)")
            }
            try await self.broker.restore(contents)
            store.start()
            let milliseconds = (NIODeadline.now() - began).nanoseconds / 1_000_000
            self.logger.info("store recovered", metadata: [
                "path": "\(store.path)", "messages": "\(contents.messages.count)",
                "durable_subscriptions": "\(contents.bindings.count)", "kept_messages": "\(contents.keptMessages.count)", "ms": "\(milliseconds)", "fsync": "\(store.sync.rawValue)",
            ])
        }
        for loop in self.broker.loops { EventLoopLagProbe.start(on: loop.eventLoop, histogram: self.metrics.eventLoopLag) }
        let files = StaticFiles(root: self.configuration.webRoot ?? StaticFiles.defaultRoot())
        let http = try await self.bindHTTP(host: self.configuration.host, port: self.configuration.port, files: files, tls: nil)
        var stomp: (any Channel)?
        if let port = self.configuration.stompPort {
            stomp = try await self.bindSTOMP(host: self.configuration.host, port: port, tls: nil)
        }
        var https: (any Channel)?
        var stompTLS: (any Channel)?
        if let tls = self.tls, let settings = self.configuration.tls {
            let host = settings.host ?? self.configuration.host
            if let port = settings.port { https = try await self.bindHTTP(host: host, port: port, files: files, tls: tls) }
            if let port = settings.stompPort { stompTLS = try await self.bindSTOMP(host: host, port: port, tls: tls) }
        }
        self.listeners.withLockedValue { $0 = ([http] + (https.map { [$0] } ?? []), [stomp, stompTLS].compactMap { $0 }) }
        let addresses = BoundAddresses(
            http: http.localAddress!, stomp: stomp?.localAddress, https: https?.localAddress, stompTLS: stompTLS?.localAddress
        )
        var metadata: Logger.Metadata = ["http": "\(Self.describe(addresses.http))"]
        if let stomp = addresses.stomp { metadata["stomp"] = "\(Self.describe(stomp))" }
        if let https = addresses.https { metadata["https"] = "\(Self.describe(https))" }
        if let stompTLS = addresses.stompTLS { metadata["stomps"] = "\(Self.describe(stompTLS))" }
        if let echo = self.configuration.echoPath { metadata["echo"] = "\(echo)" }
        if files.isEmpty { metadata["web"] = "none" }
        self.logger.info("listening", metadata: metadata)
        return addresses
    }

    static func describe(_ address: SocketAddress) -> String {
        let ip = address.ipAddress ?? "?"
        let host = ip.contains(":") ? "[\(ip)]" : ip
        return "\(host):\(address.port ?? 0)"
    }

    /// Graceful shutdown: stop accepting sessions (the STOMP ports close; the HTTP ports answer /healthz and WebSocket
    /// handshakes with 503 while draining), close every session (WebSocket 1001, TCP ERROR "server shutting down"),
    /// spread over `drainWindow`, wait for the closing handshakes up to `shutdownTimeout`, stop the loops.
    public func shutdown() async {
        guard !self.stopped.exchange(true, ordering: .acquiringAndReleasing) else { return }
        self.draining.store(true, ordering: .relaxed)
        let listeners = self.listeners.withLockedValue { $0 }
        for listener in listeners.stomp { try? await listener.close() }
        self.logger.info("draining", metadata: ["window_ms": "\(self.configuration.drainWindow.nanoseconds / 1_000_000)"])
        self.broker.shutdownConnections(spreadOver: self.configuration.drainWindow)
        let deadline = NIODeadline.now() + self.configuration.drainWindow + self.configuration.shutdownTimeout
        while NIODeadline.now() < deadline {
            let remaining = (try? await self.broker.connectionCount()) ?? 0
            if remaining == 0 { break }
            try? await Task.sleep(for: .milliseconds(50))
        }
        for listener in listeners.http { try? await listener.close() }
        try? await self.group.shutdownGracefully()
        // After the loops: everything they submitted is written before the store closes.
        self.store?.close()
        try? await self.authPool?.shutdownGracefully()
        self.logger.info("stopped")
    }

    // MARK: listeners

    private func bindHTTP(host: String, port: Int, files: StaticFiles, tls: TLSContextHolder?) async throws -> any Channel {
        let webSocket = self.configuration.webSocketConfiguration
        let routes = HTTPHandler.Routes(
            files: files,
            webSocket: webSocket,
            webSocketPaths: ["/ws", "/stomp"],
            echoPath: self.configuration.echoPath,
            draining: self.draining,
            renderMetrics: { self.metrics.scrape(broker: self.broker, loops: self.perLoop.metrics) },
            metrics: self.metrics,
            admin: self.admin,
            adminOperations: self
        )
        return try await self.bootstrap()
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls { try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls.context)) }
                    try channel.pipeline.syncOperations.addHandler(ConnectionGate(counter: self.connections, kind: .http, metrics: self.metrics))
                    let upgrader = WebSocketUpgrader(
                        configuration: webSocket,
                        draining: self.draining,
                        stompPaths: routes.webSocketPaths,
                        echoPath: routes.echoPath
                    ) { context, upgrade, isEcho, bearer in
                        self.attachWebSocket(
                            context: context, upgrade: upgrade, isEcho: isEcho, bearer: bearer, tls: tls != nil, configuration: webSocket
                        )
                    }
                    // An HTTP connection that sends nothing for a while is closed; a WebSocket has heart-beats instead.
                    try channel.pipeline.syncOperations.addHandler(
                        IdleStateHandler(readTimeout: HTTPHandler.idleTimeout), name: HTTPHandler.idleHandlerName
                    )
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(
                        withServerUpgrade: (upgraders: [upgrader], completionHandler: { context in
                            context.pipeline.syncOperations.removeHandler(name: HTTPHandler.name, promise: nil)
                            context.pipeline.syncOperations.removeHandler(name: HTTPHandler.idleHandlerName, promise: nil)
                        }),
                        withErrorHandling: true
                    )
                    try channel.pipeline.syncOperations.addHandler(HTTPHandler(routes: routes), name: HTTPHandler.name)
                }
            }
            .bind(host: host, port: port).get()
    }

    private func attachWebSocket(
        context: ChannelHandlerContext, upgrade: WebSocketUpgrade, isEcho: Bool, bearer: String?, tls: Bool,
        configuration: WebSocketConfiguration
    ) -> EventLoopFuture<Void> {
        context.eventLoop.makeCompletedFuture {
            let loop = self.broker.loop(for: context.eventLoop)
            let compressor = self.perLoop.compressors[loop.index]
            if isEcho {
                let echo = WebSocketEchoDelegate(loop: loop)
                let handler = WebSocketConnectionHandler(
                    configuration: configuration, deflate: upgrade.deflate, sharedCompressor: compressor, delegate: echo
                )
                echo.start(handler)
                try context.pipeline.syncOperations.addHandler(handler)
                return
            }
            let bridge = WebSocketSTOMPBridge(channel: context.channel)
            let handler = WebSocketConnectionHandler(
                configuration: configuration, deflate: upgrade.deflate, sharedCompressor: compressor,
                traffic: self.perLoop.metrics[loop.index].webSocket, delegate: bridge
            )
            // A subprotocol names one STOMP version; the session may not negotiate a higher one.
            let maxVersion: STOMPVersion? = switch upgrade.subprotocol {
            case "v10.stomp": .v1_0
            case "v11.stomp": .v1_1
            default: nil
            }
            let kind = ConnectionKind(webSocket: true, tls: tls, deflate: upgrade.deflate != nil)
            let connection = self.makeConnection(loop: loop, transport: bridge, kind: kind, maxVersion: maxVersion, bearer: bearer)
            bridge.start(webSocket: handler, connection: connection)
            try context.pipeline.syncOperations.addHandler(handler)
        }
    }

    private func bindSTOMP(host: String, port: Int, tls: TLSContextHolder?) async throws -> any Channel {
        try await self.bootstrap()
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls { try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls.context)) }
                    try channel.pipeline.syncOperations.addHandler(ConnectionGate(counter: self.connections, kind: .stomp, metrics: self.metrics))
                    let handler = TCPSTOMPHandler(broker: self.broker) { loop, transport in
                        self.makeConnection(loop: loop, transport: transport, kind: ConnectionKind(webSocket: false, tls: tls != nil, deflate: false))
                    }
                    try channel.pipeline.syncOperations.addHandler(handler)
                }
            }
            .bind(host: host, port: port).get()
    }

    private func bootstrap() -> ServerBootstrap {
        // Past the high-water mark the socket counts as full: deliveries wait, per their slow-consumer policies, in the
        // connection's backlog (bounded by max-pending-bytes), instead of in NIO's write queue.
        let highWater = Self.highWaterMark(self.configuration.limits.maxPendingBytes)
        return ServerBootstrap(group: self.group)
            .serverChannelOption(.backlog, value: 4096)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelOption(.writeBufferWaterMark, value: .init(low: highWater / 2, high: highWater))
            .childChannelOption(.maxMessagesPerRead, value: 16)
            // NIO keeps each connection's last receive buffer for the next read, so its size is paid by every idle
            // connection. Start small (a WebSocket handshake or a CONNECT fits): the buffer doubles on every read
            // that fills it, so a busy publisher reaches 64 KiB within a few reads.
            .childChannelOption(.recvAllocator, value: AdaptiveRecvByteBufferAllocator(minimum: 64, initial: Self.initialReceiveBuffer, maximum: 64 * 1024))
    }

    /// The first receive buffer of a connection (NIO's default is 2,048 bytes).
    static let initialReceiveBuffer = 512

    /// Bytes queued in the server for a socket the kernel does not take any more before the client counts as slow.
    static func highWaterMark(_ maxPendingBytes: Int) -> Int { min(64 * 1024, maxPendingBytes) }

    private func makeConnection(
        loop: LoopBroker, transport: any STOMPTransport, kind: ConnectionKind, maxVersion: STOMPVersion? = nil, bearer: String? = nil
    ) -> STOMPConnection {
        let number = self.sessionCounter.wrappingIncrementThenLoad(ordering: .relaxed)
        let identity = STOMPConnection.Identity(sessionID: "\(self.nodeTag)-\(number)", kind: kind, handshakeToken: bearer, maxVersion: maxVersion)
        return STOMPConnection(
            loop: loop, clock: self.perLoop.clocks[loop.index], metrics: self.perLoop.metrics[loop.index], transport: transport,
            settings: self.connectionTemplate, identity: identity, logger: self.logger
        )
    }

    /// The admin API's session on `loop` (`AdminPublisher`): no login check, no access rules, no frame rate limit, no
    /// heart-beats; its messages carry `user-name:admin`.
    func makeAdminConnection(loop: LoopBroker, transport: any STOMPTransport) -> STOMPConnection {
        var settings = self.connectionTemplate.value
        let number = self.sessionCounter.wrappingIncrementThenLoad(ordering: .relaxed)
        settings.authentication = nil
        settings.access = nil
        settings.maxFrameRate = 0
        return STOMPConnection(
            loop: loop, clock: self.perLoop.clocks[loop.index], metrics: self.perLoop.metrics[loop.index], transport: transport,
            settings: .init(settings), identity: .init(sessionID: "\(self.nodeTag)-admin-\(number)", kind: .internal), logger: self.logger
        )
    }

}

/// What each event loop shares among its connections: the permessage-deflate compressor, the timer clock and the
/// counters.
/// Index i belongs to loop i and is used only on it, which is why the holder may be `@unchecked Sendable`.
final class PerLoopResources: @unchecked Sendable {
    let compressors: [SharedMessageCompressor]
    let clocks: [ConnectionClock]
    let metrics: [LoopMetrics]

    init(loops: [any EventLoop], memoryLevel: Int, metrics: ServerMetrics) {
        self.compressors = loops.map { _ in SharedMessageCompressor(memoryLevel: memoryLevel) }
        self.clocks = loops.map { ConnectionClock(eventLoop: $0) }
        self.metrics = loops.map { _ in LoopMetrics(server: metrics) }
        self.publishers = loops.map { _ in nil }
    }

    /// The admin API's publisher of each loop, made by the first admin publish on it.
    private var publishers: [AdminPublisher?]

    /// Call on `loop`.
    func publisher(on loop: LoopBroker, makeConnection: @escaping (LoopBroker, any STOMPTransport) -> STOMPConnection) -> AdminPublisher {
        loop.eventLoop.preconditionInEventLoop()
        if let publisher = self.publishers[loop.index] { return publisher }
        let publisher = AdminPublisher(loop: loop, makeConnection: makeConnection)
        self.publishers[loop.index] = publisher
        return publisher
    }
}

extension HTTPHandler {
    static let name = "starling-http"
    static let idleHandlerName = "starling-http-idle"
    /// How long an HTTP connection may stay silent (before a request, or between keep-alive requests).
    static let idleTimeout = TimeAmount.seconds(30)
}
