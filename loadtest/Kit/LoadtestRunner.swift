import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// Runs one scenario against the target and produces the result. The executable calls `run()`; the
/// scenarios live in `LoadtestRunner+scenarios.swift`.
///
/// Threading: one event loop per core; every connection lives on one loop and all the measurements of a
/// loop live in its `LoopStats`, touched only there. This task (the runner) only reads snapshots through
/// `EventLoop.submit`, once a second for the progress line and once at the end.
public final class LoadtestRunner: Sendable {
    let configuration: LoadtestConfiguration
    let group: MultiThreadedEventLoopGroup
    let loops: [EventLoop]
    let plan: RunPlan
    let settings: ConnectionSettings
    let progress: ProgressReporter

    public init(configuration: LoadtestConfiguration) {
        self.configuration = configuration
        let threads = max(1, System.coreCount)
        self.group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
        self.loops = Array(self.group.makeIterator())
        self.plan = RunPlan(configuration: configuration, loops: self.loops.count)
        self.settings = ConnectionSettings(
            target: configuration.url, login: configuration.login, passcode: configuration.passcode,
            virtualHost: configuration.virtualHost, deflate: configuration.deflate,
            heartbeatMilliseconds: configuration.scenario == .connections ? configuration.heartbeatMilliseconds : 0,
            connectTimeout: .milliseconds(Int64(configuration.connectTimeoutSeconds * 1000))
        )
        self.progress = ProgressReporter(quiet: configuration.quiet || configuration.isWorker)
    }

    /// Runs the scenario; never throws: refusals end up in `errors` and the exit status.
    public func run() async -> LoadtestResult {
        Self.raiseOpenFileLimit()
        let stats = await self.makeStats()
        var result: LoadtestResult
        switch self.configuration.scenario {
        case .connections:
            if self.configuration.workers > 1 && !self.configuration.isWorker {
                result = await WorkerPool(configuration: self.configuration).run()
            } else {
                result = await self.runConnections(stats: stats)
            }
        case .fanout, .rooms, .queue:
            result = await self.runMessaging(stats: stats)
        }
        self.progress.finish()
        try? await self.group.shutdownGracefully()
        return result
    }

    // MARK: - Loops

    func makeStats() async -> [NIOLoopBound<LoopStats>] {
        var boxes: [NIOLoopBound<LoopStats>] = []
        for (index, loop) in self.loops.enumerated() {
            let plan = self.plan
            let box = try! await loop.submit { NIOLoopBound(LoopStats(index: index, plan: plan), eventLoop: loop) }.get()
            boxes.append(box)
        }
        return boxes
    }

    /// Reads every loop's figures.
    func snapshots(_ stats: [NIOLoopBound<LoopStats>], latency: Bool = true, seen: Bool = false) async -> [LoopSnapshot] {
        var result: [LoopSnapshot] = []
        for (index, box) in stats.enumerated() {
            if let snapshot = try? await self.loops[index].submit({ box.value.snapshot(withLatency: latency, withSeen: seen) }).get() {
                result.append(snapshot)
            }
        }
        return result
    }

    /// Runs `body` on every loop with that loop's stats.
    func onEveryLoop(_ stats: [NIOLoopBound<LoopStats>], _ body: @escaping @Sendable (LoopStats) -> Void) async {
        for (index, box) in stats.enumerated() {
            try? await self.loops[index].submit { body(box.value) }.get()
        }
    }

    /// Closes every open connection (WebSocket close frame, then TCP) and waits briefly for the closes.
    func closeAll(_ stats: [NIOLoopBound<LoopStats>]) async {
        await self.onEveryLoop(stats) { stats in
            stats.publishing = false
            stats.pacer?.cancel()
            for connection in stats.connections.values { connection.close() }
        }
        for _ in 0..<50 {
            let open = await self.snapshots(stats, latency: false).reduce(0) { $0 + $1.connections }
            if open == 0 { break }
            try? await Task.sleep(nanoseconds: 20_000_000)
        }
    }

    // MARK: - Connecting

    /// A connection handed to the runner: its channel and the handler, usable on the channel's loop only.
    struct ConnectionRef: Sendable {
        let channel: Channel
        let handler: NIOLoopBound<ClientConnection>

        func onLoop<T: Sendable>(_ body: @escaping @Sendable (ClientConnection) -> EventLoopFuture<T>) async throws -> T {
            let handler = self.handler
            return try await self.channel.eventLoop.flatSubmit { body(handler.value) }.get()
        }
    }

    /// Opens connection number `index` (TCP, upgrade, CONNECT) on loop `index % loops`.
    func open(index: Int, stats: [NIOLoopBound<LoopStats>]) async throws -> ConnectionRef {
        let loopIndex = index % self.loops.count
        let loop = self.loops[loopIndex]
        let statsBox = stats[loopIndex]
        let settings = self.settings
        // The handler is kept from the initializer: looking it up in the pipeline after `connect` races with a
        // server that answers and closes at once (a refused upgrade), whose handlers are already gone by then.
        let created = NIOLockedValueBox<NIOLoopBound<ClientConnection>?>(nil)
        var bootstrap = ClientBootstrap(group: loop)
            .connectTimeout(settings.connectTimeout)
            .channelOption(ChannelOptions.tcpOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let handler = ClientConnection(settings: settings, stats: statsBox.value, eventLoop: channel.eventLoop)
                    created.withLockedValue { $0 = NIOLoopBound(handler, eventLoop: channel.eventLoop) }
                    try channel.pipeline.syncOperations.addHandler(handler)
                }
            }
        if self.configuration.sourceAddresses > 1 {
            let address = "127.0.0.\(1 + index % self.configuration.sourceAddresses)"
            bootstrap = bootstrap.bind(to: try SocketAddress(ipAddress: address, port: 0))
        }
        let target = self.configuration.url
        let channel: Channel
        do {
            channel = try await bootstrap.connect(host: target.host, port: target.port).get()
        } catch {
            throw LoadtestError.refused("cannot connect to \(target.host):\(target.port): \(Self.describe(error))")
        }
        guard let handler = created.withLockedValue({ $0 }) else {
            channel.close(promise: nil)
            throw LoadtestError.refused("cannot connect to \(target.host):\(target.port): the connection was not set up")
        }
        let ref = ConnectionRef(channel: channel, handler: handler)
        do {
            try await ref.onLoop { $0.ready.futureResult }
        } catch {
            channel.close(promise: nil)
            throw error
        }
        return ref
    }

    /// Opens `count` connections, at most `connectConcurrency` at a time, running `configure` on each once it
    /// is connected (e.g. SUBSCRIBE and wait for the RECEIPT). With `failFast` the first failure stops the
    /// opening. Returns the connections (nil where failed) and the distinct errors.
    func openMany(
        _ count: Int,
        indexOffset: Int = 0,
        stats: [NIOLoopBound<LoopStats>],
        failFast: Bool,
        configure: @escaping @Sendable (Int, ConnectionRef) async throws -> Void
    ) async -> (connections: [ConnectionRef?], failed: Int, errors: [String]) {
        var connections = [ConnectionRef?](repeating: nil, count: count)
        var failed = 0
        var errors: [String] = []
        let concurrency = max(1, self.configuration.connectConcurrency)
        await withTaskGroup(of: (Int, Result<ConnectionRef, Error>).self) { group in
            var next = 0
            var stop = false
            func launch() {
                let index = next
                next += 1
                group.addTask {
                    do {
                        let ref = try await self.open(index: index + indexOffset, stats: stats)
                        do {
                            try await configure(index, ref)
                        } catch {
                            ref.channel.close(promise: nil)
                            throw error
                        }
                        return (index, .success(ref))
                    } catch {
                        return (index, .failure(error))
                    }
                }
            }
            while next < count && next < concurrency { launch() }
            while let (index, outcome) = await group.next() {
                switch outcome {
                case .success(let ref):
                    connections[index] = ref
                case .failure(let error):
                    failed += 1
                    let message = Self.describe(error)
                    if errors.count < 20 && !errors.contains(message) { errors.append(message) }
                    if failFast { stop = true }
                }
                if !stop && next < count { launch() }
                self.progress.connecting(opened: connections.count { $0 != nil }, failed: failed, of: count)
            }
        }
        return (connections, failed, errors)
    }

    static func describe(_ error: Error) -> String {
        if let error = error as? LoadtestError { return error.description }
        if let error = error as? IOError { return String(cString: strerror(error.errnoCode)) }
        if let error = error as? NIOConnectionError {
            let causes = error.connectionErrors.map { Self.describe($0.error) }
            return causes.isEmpty ? "\(error)" : Array(Set(causes)).sorted().joined(separator: "; ")
        }
        if error is ChannelError, case ChannelError.connectTimeout = error as! ChannelError {
            return "TCP connect timed out"
        }
        return "\(error)"
    }

    /// The soft open-files limit is raised to the hard one (each connection is one socket).
    static func raiseOpenFileLimit() {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < limit.rlim_max else { return }
        limit.rlim_cur = limit.rlim_max
        _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    }
}
