import Foundation
import NIOCore

extension LoadtestRunner {
    // MARK: - fanout, rooms, queue

    /// Subscribers first (each confirmed by a RECEIPT), then publishers, so every message sent is expected by
    /// every subscriber of its destination. Then warm-up + measured window, then a drain, then verification.
    func runMessaging(stats: [NIOLoopBound<LoopStats>]) async -> LoadtestResult {
        let configuration = self.configuration
        var result = LoadtestResult(configuration: configuration)
        var monitor = ProcessMonitor(serverPID: configuration.serverPID)
        let withStalled = configuration.scenario == .fanout && configuration.stalledPercent != nil
        monitor.recordSeries = withStalled
        monitor.sampleBefore()
        let stalled = self.plan.stalled

        // Receivers (and, in rooms, publishers too).
        let receiverCount: Int
        switch configuration.scenario {
        case .fanout: receiverCount = configuration.topics * configuration.subscribers
        case .rooms: receiverCount = configuration.rooms * configuration.members
        default: receiverCount = configuration.consumers
        }
        let receivers = await self.openMany(receiverCount, stats: stats, failFast: true) { index, ref in
            try await ref.onLoop { connection in
                switch configuration.scenario {
                case .fanout:
                    let subscribed = connection.subscribe(destination: index % configuration.topics, publisherBase: 0,
                                                          publishers: configuration.publishers, ackMode: .auto)
                    // Subscriber number index / topics of its topic; a stalled one stops reading once subscribed.
                    guard stalled.isStalled(rank: index / configuration.topics), let bound = connection.bound else {
                        return subscribed
                    }
                    return subscribed.map { bound.value.stall() }
                case .rooms:
                    let room = index / configuration.members
                    connection.publisher = PublisherState(id: index, destinations: [room], rate: configuration.rate)
                    return connection.subscribe(destination: room, publisherBase: room * configuration.members,
                                                publishers: configuration.members, ackMode: .auto)
                default:
                    return connection.subscribe(destination: index % configuration.queues, publisherBase: 0,
                                                publishers: configuration.publishers, ackMode: configuration.ackMode)
                }
            }
        }
        var publishers = configuration.scenario == .rooms ? receivers.connections.compactMap { $0 } : []
        var failed = receivers.failed
        var errors = receivers.errors
        if failed == 0 && configuration.scenario != .rooms {
            let destinations = self.plan.destinations.count
            let rate = configuration.rate / Double(configuration.publishers)
            let opened = await self.openMany(configuration.publishers, indexOffset: receiverCount, stats: stats,
                                             failFast: true) { index, ref in
                try await ref.onLoop { connection in
                    // Each publisher sends round-robin to every destination, starting at a different one.
                    let order = (0..<destinations).map { (index + $0) % destinations }
                    connection.publisher = PublisherState(id: index, destinations: order, rate: rate)
                    return connection.eventLoop.makeSucceededVoidFuture()
                }
            }
            publishers = opened.connections.compactMap { $0 }
            failed += opened.failed
            errors += opened.errors
        }
        if failed > 0 {
            let snapshots = await self.snapshots(stats, latency: false)
            result.connections = LoadtestResult.Connections(
                opened: snapshots.reduce(0) { $0 + $1.opened }, failed: failed, dropped: snapshots.reduce(0) { $0 + $1.dropped })
            result.errors = errors
            result.durationSeconds = 0
            await self.closeAll(stats)
            result.server = monitor.server(connections: nil)
            if withStalled { result.stalled = Self.stalledFigures(snapshots, stalled: stalled, configuration: configuration) }
            return result
        }

        // Warm-up and measured window.
        let began = MonotonicClock.nanoseconds()
        let start = began + UInt64(configuration.warmupSeconds * 1e9)
        let end = start + UInt64(configuration.durationSeconds * 1e9)
        await self.onEveryLoop(stats) { stats in
            stats.measureStart = start
            stats.measureEnd = end
            stats.publishing = true
        }
        for publisher in publishers {
            _ = try? await publisher.onLoop { connection in
                connection.startPublishing(at: began)
                return connection.eventLoop.makeSucceededVoidFuture()
            }
        }
        for (index, box) in stats.enumerated() {
            let loop = self.loops[index]
            try? await loop.submit {
                let stats = box.value
                guard !stats.pacedPublishers.isEmpty else { return }
                stats.pacer = loop.scheduleRepeatedTask(initialDelay: .milliseconds(1), delay: .milliseconds(1)) { task in
                    let stats = box.value
                    let now = MonotonicClock.nanoseconds()
                    guard stats.publishing, now < stats.measureEnd else {
                        task.cancel()
                        return
                    }
                    var due: [ClientConnection] = []
                    while let publisher = stats.pacedPublishers.popDue(now: now) { due.append(publisher) }
                    for publisher in due {
                        // Not sent (socket full, connection closing): look again in a millisecond.
                        let next = publisher.sendDue(now: now) ?? now + 1_000_000
                        stats.pacedPublishers.insert(publisher, due: next)
                    }
                }
            }.get()
        }

        var last = (time: began, sent: UInt64(0), delivered: UInt64(0))
        var started = false
        while true {
            let now = MonotonicClock.nanoseconds()
            if !started && now >= start {
                monitor.markStart()
                started = true
            }
            if now >= end { break }
            let nextSecond = began + ((now - began) / 1_000_000_000 + 1) * 1_000_000_000
            let wake = min(nextSecond, started ? end : start)
            try? await Task.sleep(nanoseconds: max(wake - now, 1_000_000))
            monitor.tick()
            last = await self.report(stats, since: last, began: began, phase: MonotonicClock.nanoseconds() < start ? "warm-up" : "")
        }
        monitor.markEnd()
        await self.onEveryLoop(stats) { stats in
            stats.publishing = false
            stats.pacer?.cancel()
            stats.pacer = nil
        }

        // Drain: until everything expected arrived, or 1 s without anything new (at most 5 s).
        let drainStart = MonotonicClock.nanoseconds()
        var lastDelivered: UInt64 = .max
        var lastChange = drainStart
        var nextTick = drainStart + 1_000_000_000
        while true {
            if withStalled && MonotonicClock.nanoseconds() >= nextTick {
                monitor.tick()  // the RSS series goes on through the drain
                nextTick += 1_000_000_000
            }
            let snapshots = await self.snapshots(stats, latency: false)
            let delivered = snapshots.reduce(0) { $0 + $1.tally.unique }
            let expected = self.expected(snapshots)
            let now = MonotonicClock.nanoseconds()
            if delivered != lastDelivered {
                lastDelivered = delivered
                lastChange = now
            }
            if delivered >= expected || now - lastChange >= 1_000_000_000 || now - drainStart >= 5_000_000_000 { break }
            self.progress.show(String(format: "%6.1fs draining: %llu of %llu delivered", Double(now - began) / 1e9,
                                      delivered, expected))
            try? await Task.sleep(nanoseconds: 50_000_000)
        }

        let snapshots = await self.snapshots(stats, latency: true, seen: configuration.scenario == .queue)
        self.fill(&result, from: snapshots, errors: errors)
        if withStalled {
            result.stalled = await self.drainStalled(stats, monitor: &monitor, snapshots: snapshots, began: began)
            result.stalled!.healthyDeliveredPerSecond = result.deliveredPerSecond
        }
        await self.closeAll(stats)
        monitor.tick()
        result.server = monitor.server(connections: nil, seriesOrigin: began)
        result.client.cpuPercent = monitor.clientCPUPercent
        if monitor.serverVanished { result.errors.append("the server process \(configuration.serverPID!) exited during the run") }
        return result
    }

    /// The stalled subscribers read again, until each is closed by the broker or idle for 1 s (at most
    /// `stalledDrainSeconds`): a close the broker queued behind their backlog shows only once that is read.
    /// Then those still open send a heart-beat and get 1 s more: a socket the broker closed long ago may have been
    /// given up by its kernel (an orphan whose peer's window stayed zero), and only answers with a reset.
    func drainStalled(_ stats: [NIOLoopBound<LoopStats>], monitor: inout ProcessMonitor, snapshots before: [LoopSnapshot],
                      began: UInt64) async -> LoadtestResult.Stalled {
        let configuration = self.configuration
        await self.onEveryLoop(stats) { stats in
            for connection in stats.connections.values where connection.stalled { connection.resumeReading() }
        }
        let start = MonotonicClock.nanoseconds()
        let limit = UInt64(configuration.stalledDrainSeconds * 1e9)
        var lastActivity: UInt64 = .max
        var lastChange = start
        var nextTick = start + 1_000_000_000
        var snapshots = before
        while true {
            snapshots = await self.snapshots(stats, latency: false)
            let now = MonotonicClock.nanoseconds()
            let figures = Self.stalledFigures(snapshots, stalled: self.plan.stalled, configuration: configuration)
            let activity = figures.bytesAfterResume &+ UInt64(figures.closedByBroker)
            if activity != lastActivity {
                lastActivity = activity
                lastChange = now
            }
            if figures.openAtEnd == 0 || now - lastChange >= 1_000_000_000 || now - start >= limit { break }
            if now >= nextTick {
                monitor.tick()
                nextTick += 1_000_000_000
            }
            self.progress.show(String(
                format: "%6.1fs stalled subscribers reading their backlog: %llu messages, %d closed by the broker, %d open",
                Double(now - began) / 1e9, figures.deliveredAfterResume, figures.closedByBroker, figures.openAtEnd))
            try? await Task.sleep(nanoseconds: 100_000_000)
        }
        if Self.stalledFigures(snapshots, stalled: self.plan.stalled, configuration: configuration).openAtEnd > 0 {
            await self.onEveryLoop(stats) { stats in
                for connection in stats.connections.values where connection.stalled { connection.poke() }
            }
            let poked = MonotonicClock.nanoseconds()
            while MonotonicClock.nanoseconds() - poked < 1_000_000_000 {
                try? await Task.sleep(nanoseconds: 100_000_000)
                snapshots = await self.snapshots(stats, latency: false)
                if Self.stalledFigures(snapshots, stalled: self.plan.stalled, configuration: configuration).openAtEnd == 0 { break }
            }
        }
        var figures = Self.stalledFigures(snapshots, stalled: self.plan.stalled, configuration: configuration)
        figures.drainSeconds = (Double(MonotonicClock.nanoseconds() - start) / 1e8).rounded() / 10
        return figures
    }

    static func stalledFigures(_ snapshots: [LoopSnapshot], stalled: StalledSelection,
                               configuration: LoadtestConfiguration) -> LoadtestResult.Stalled {
        var figures = LoadtestResult.Stalled()
        figures.percent = configuration.stalledPercent ?? 0
        figures.perTopic = stalled.count
        figures.healthySubscribers = stalled.healthy * configuration.topics
        for snapshot in snapshots {
            figures.subscribers += snapshot.stalled.connections
            figures.closedByBroker += snapshot.stalled.closed
            figures.deliveredAfterResume += snapshot.stalled.delivered
            figures.bytesAfterResume += snapshot.stalled.bytes
            for reason in snapshot.stalled.closeReasons where !figures.closeReasons.contains(reason) && figures.closeReasons.count < 10 {
                figures.closeReasons.append(reason)
            }
        }
        figures.openAtEnd = figures.subscribers - figures.closedByBroker
        return figures
    }

    /// Messages that should arrive: for each destination, messages sent there x its subscriptions.
    func expected(_ snapshots: [LoopSnapshot]) -> UInt64 {
        var expected: UInt64 = 0
        for snapshot in snapshots {
            for (destination, sent) in snapshot.sentPerDestination.enumerated() {
                expected += sent * UInt64(self.plan.deliveriesPerMessage[destination])
            }
        }
        return expected
    }

    func fill(_ result: inout LoadtestResult, from snapshots: [LoopSnapshot], errors: [String]) {
        var tally = VerificationTally()
        var latency = LatencyHistogram()
        var sentMeasured: UInt64 = 0
        var deliveredMeasured: UInt64 = 0
        var unique: UInt64 = 0
        for snapshot in snapshots {
            tally.merge(snapshot.tally)
            if let histogram = snapshot.latency { latency.merge(histogram) }
            result.sent += snapshot.sentTotal
            sentMeasured += snapshot.sentMeasured
            deliveredMeasured += snapshot.deliveredMeasured
            result.connections.opened += snapshot.opened
            result.connections.dropped += snapshot.dropped
            for error in snapshot.errors where !result.errors.contains(error) { result.errors.append(error) }
        }
        if self.configuration.scenario == .queue {
            // Competing consumers on different loops: a number seen on two loops was delivered twice.
            var merged = [SeenSet](repeating: SeenSet(), count: snapshots.first?.seen.count ?? 0)
            for snapshot in snapshots {
                for (slot, seen) in snapshot.seen.enumerated() {
                    tally.duplicated += UInt64(merged[slot].merge(seen))
                }
            }
            unique = merged.reduce(0) { $0 + UInt64($1.count) }
        } else {
            unique = tally.unique
        }
        for error in errors where !result.errors.contains(error) { result.errors.append(error) }
        result.expected = self.expected(snapshots)
        result.delivered = tally.delivered
        result.duplicated = tally.duplicated
        result.outOfOrder = tally.outOfOrder
        result.lost = result.expected > unique ? result.expected - unique : 0
        result.sentPerSecond = Double(sentMeasured) / self.configuration.durationSeconds
        result.deliveredPerSecond = Double(deliveredMeasured) / self.configuration.durationSeconds
        result.latencyMs = latency.summary
        if tally.foreign > 0 {
            result.errors.append("\(tally.foreign) MESSAGE frames without this run's x-lt-* headers were ignored")
        }
    }

    /// One progress line; returns the counters for the next rate computation.
    func report(_ stats: [NIOLoopBound<LoopStats>], since last: (time: UInt64, sent: UInt64, delivered: UInt64),
                began: UInt64, phase: String) async -> (time: UInt64, sent: UInt64, delivered: UInt64) {
        let snapshots = await self.snapshots(stats, latency: true)
        let now = MonotonicClock.nanoseconds()
        var latency = LatencyHistogram()
        var sent: UInt64 = 0
        var delivered: UInt64 = 0
        var connections = 0
        for snapshot in snapshots {
            sent += snapshot.sentTotal
            delivered += snapshot.tally.delivered
            connections += snapshot.connections
            if let histogram = snapshot.latency { latency.merge(histogram) }
        }
        let seconds = max(Double(now - last.time) / 1e9, 0.001)
        self.progress.running(
            elapsed: Double(now - began) / 1e9, sentPerSecond: Double(sent - last.sent) / seconds,
            deliveredPerSecond: Double(delivered - last.delivered) / seconds,
            p99: latency.milliseconds(atPercentile: 99), connections: connections, phase: phase.isEmpty ? "" : phase + " "
        )
        return (now, sent, delivered)
    }

    // MARK: - connections

    /// N idle connections with heart-beats both ways; the server's RSS growth per connection.
    func runConnections(stats: [NIOLoopBound<LoopStats>]) async -> LoadtestResult {
        let configuration = self.configuration
        var result = LoadtestResult(configuration: configuration)
        var monitor = ProcessMonitor(serverPID: configuration.serverPID)
        monitor.sampleBefore()
        let count = configuration.connections
        let offset = configuration.isWorker ? configuration.workerIndex : 0
        let opened = await self.openMany(count, indexOffset: offset, stats: stats, failFast: false) { _, _ in }
        let openedCount = opened.connections.count { $0 != nil }
        result.connections.failed = opened.failed
        result.errors = opened.errors
        // Give the server a moment to settle its allocations before reading its RSS.
        try? await Task.sleep(nanoseconds: 1_000_000_000)
        monitor.sampleAfter()
        monitor.markStart()
        if configuration.isWorker {
            // Tell the parent we are connected; it measures the server and then releases us.
            WorkerPool.announceConnected(opened: openedCount, failed: opened.failed)
            await WorkerPool.waitForRelease()
        } else {
            let began = MonotonicClock.nanoseconds()
            let end = began + UInt64(configuration.holdSeconds * 1e9)
            while MonotonicClock.nanoseconds() < end {
                let now = MonotonicClock.nanoseconds()
                try? await Task.sleep(nanoseconds: min(1_000_000_000, end - now))
                monitor.tick()
                let snapshots = await self.snapshots(stats, latency: false)
                self.progress.show(String(
                    format: "%6.1fs holding %d connections (%d dropped)", Double(MonotonicClock.nanoseconds() - began) / 1e9,
                    snapshots.reduce(0) { $0 + $1.connections }, snapshots.reduce(0) { $0 + $1.dropped }))
            }
        }
        monitor.markEnd()
        let snapshots = await self.snapshots(stats, latency: false)
        for snapshot in snapshots {
            result.connections.opened += snapshot.opened
            result.connections.dropped += snapshot.dropped
            for error in snapshot.errors where !result.errors.contains(error) { result.errors.append(error) }
        }
        await self.closeAll(stats)
        result.server = monitor.server(connections: openedCount)
        result.client.cpuPercent = monitor.clientCPUPercent
        return result
    }
}
