import Foundation
import NIOConcurrencyHelpers
import NIOCore
import Prometheus
import StarlingBroker
import StarlingStore

/// What `GET /metrics` reports (Prometheus text format, swift-prometheus).
///
/// Two kinds of counting. Rare events (a connection opened, an ERROR, a limit hit, an auth failure, a group commit)
/// go straight to the registry's counters and histograms. Per-message counts (messages in and out, bytes) are kept
/// per event loop in plain integers (`LoopMetrics`): at a million deliveries a second, an atomic shared by both loops
/// would bounce its cache line on every delivery. A scrape collects them from each loop (one hop per loop) and adds
/// what is new since the previous scrape to the registry's counters.
final class ServerMetrics: Sendable {
    let registry = PrometheusCollectorRegistry()
    /// How many queues get their own `queue` label (the deepest); the rest count in the totals only.
    let queueLabelLimit: Int
    private let errors: [ErrorReason: Counter]
    private let limits: [LimitName: Counter]
    private let opened: [ConnectionKind: Counter]
    private let authFailures: Counter
    let deliveryLatency: DurationHistogram
    let eventLoopLag: DurationHistogram
    let storeBatchSize: ValueHistogram
    let storeCommitDuration: DurationHistogram
    /// Totals already added to the registry's counters (by metric and labels), and the queues labelled last time.
    private let exported = NIOLockedValueBox<(totals: [String: Int], labelledQueues: Set<String>)>(([:], []))

    init(queueLabelLimit: Int = 50) {
        self.queueLabelLimit = queueLabelLimit
        let registry = self.registry
        let errorName = Self.name("errors", "total", "ERROR frames sent, by reason")
        self.errors = Dictionary(uniqueKeysWithValues: ErrorReason.allCases.map { ($0, registry.makeCounter(descriptor: errorName, labels: [("reason", $0.rawValue)])) })
        let limitName = Self.name("limits_hit", "total", "Times a client ran into a limit, by the setting that set it")
        self.limits = Dictionary(uniqueKeysWithValues: LimitName.allCases.map { ($0, registry.makeCounter(descriptor: limitName, labels: [("limit", $0.rawValue)])) })
        let openedName = Self.name("connections_opened", "total", "Connections accepted, by transport")
        self.opened = Dictionary(uniqueKeysWithValues: ConnectionKind.clientKinds.map { ($0, registry.makeCounter(descriptor: openedName, labels: $0.labels)) })
        self.authFailures = registry.makeCounter(descriptor: Self.name("auth_failures", "total", "CONNECTs refused: wrong login or passcode, bad token, or too many failures"))
        let latencyBuckets: [Duration] = [
            .microseconds(50), .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .microseconds(2500),
            .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250),
            .milliseconds(500), .seconds(1), .seconds(5),
        ]
        self.deliveryLatency = registry.makeDurationHistogram(
            descriptor: Self.name("delivery_latency", "seconds", "From publish to the delivering loop's flush, per delivered batch (its oldest message)"),
            buckets: latencyBuckets
        )
        self.eventLoopLag = registry.makeDurationHistogram(
            descriptor: Self.name("event_loop_lag", "seconds", "How late a timer due every 250 ms runs on each event loop"), buckets: latencyBuckets
        )
        self.storeBatchSize = registry.makeValueHistogram(
            descriptor: Self.name("store_batch", "operations", "Store operations (inserts, deletes, updates) per group commit"),
            buckets: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000]
        )
        self.storeCommitDuration = registry.makeDurationHistogram(
            descriptor: Self.name("store_commit", "seconds", "Duration of a group commit: statements, COMMIT and its fsync"), buckets: latencyBuckets
        )
    }

    static func name(_ metric: String, _ unit: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: "starling", metricName: metric, unitName: unit, helpText: help)
    }

    // MARK: events

    func error(_ reason: ErrorReason) { self.errors[reason]?.increment() }
    func limitHit(_ limit: LimitName) { self.limits[limit]?.increment() }
    func opened(_ kind: ConnectionKind) { self.opened[kind]?.increment() }
    func authFailed() { self.authFailures.increment() }

    // MARK: scrape

    /// Collects every loop's counts (one hop per loop) and renders the registry.
    func scrape(broker: Broker, loops: [LoopMetrics]) -> EventLoopFuture<[UInt8]> {
        let futures = broker.loops.map { loop in loop.eventLoop.submit { loops[loop.index].snapshot(loop) } }
        return EventLoopFuture.whenAllSucceed(futures, on: broker.loops[0].eventLoop).map { snapshots in
            self.update(snapshots)
            return self.registry.emitToBuffer()
        }
    }

    private func update(_ snapshots: [LoopMetrics.Snapshot]) {
        func sum(_ value: (LoopMetrics.Snapshot) -> Int) -> Int { snapshots.reduce(0) { $0 + value($1) } }
        var totals: [(MetricNameDescriptor, [(String, String)], Int)] = []
        let received = Self.name("messages_received", "total", "Messages accepted from SEND frames, by destination kind")
        for kind in DestinationKind.allCases {
            totals.append((received, [("kind", kind.label)], sum { $0.received[kind.rawValue] }))
        }
        let delivered = Self.name("messages_delivered", "total", "MESSAGE frames written to subscribers, by destination kind")
        totals.append((delivered, [("kind", "topic")], sum(\.topicDeliveries)))
        totals.append((delivered, [("kind", "room")], sum(\.streamDeliveries)))
        totals.append((delivered, [("kind", "queue")], sum(\.queueDeliveries)))
        let wire = Self.name("network", "bytes_total", "Bytes read and written (WebSocket: frames, compressed; TLS: before encryption)")
        totals.append((wire, [("transport", "tcp"), ("direction", "in")], sum(\.tcpBytesIn)))
        totals.append((wire, [("transport", "tcp"), ("direction", "out")], sum(\.tcpBytesOut)))
        totals.append((wire, [("transport", "ws"), ("direction", "in")], sum(\.webSocket.wireIn)))
        totals.append((wire, [("transport", "ws"), ("direction", "out")], sum(\.webSocket.wireOut)))
        let payload = Self.name("websocket_payload", "bytes_total", "WebSocket message payloads before compression (out) and after inflation (in)")
        totals.append((payload, [("direction", "in")], sum(\.webSocket.payloadIn)))
        totals.append((payload, [("direction", "out")], sum(\.webSocket.payloadOut)))
        let messages = Self.name("websocket_messages", "total", "WebSocket messages")
        totals.append((messages, [("direction", "in")], sum(\.webSocket.messagesIn)))
        totals.append((messages, [("direction", "out")], sum(\.webSocket.messagesOut)))
        let closes = Self.name("websocket_failures", "total", "WebSocket connections closed for a protocol error, by close code")
        totals.append((closes, [("code", "1009")], sum(\.webSocketFailures.tooBig)))
        totals.append((closes, [("code", "other")], sum(\.webSocketFailures.other)))
        let skipped = Self.name("deliveries_skipped", "total", "Messages a slow subscriber did not get, by slow-consumer policy")
        totals.append((skipped, [("policy", "conflate")], sum(\.conflated)))
        totals.append((skipped, [("policy", "drop-oldest")], sum(\.dropped)))

        let registry = self.registry
        let connectionsName = Self.name("connections", "", "Open client connections, by transport")
        for kind in ConnectionKind.clientKinds {
            registry.makeGauge(descriptor: connectionsName, labels: kind.labels).set(Double(sum { $0.connections[kind.rawValue] }))
        }
        registry.makeGauge(descriptor: Self.name("sessions", "", "STOMP sessions past CONNECTED")).set(Double(sum(\.sessions)))
        registry.makeGauge(descriptor: Self.name("subscriptions", "", "Topic and room subscriptions")).set(Double(sum(\.subscriptions)))
        let patterns = Set(snapshots.flatMap(\.topicPatterns))
        let queues = snapshots.flatMap(\.queues)
        let destinations = Self.name("destinations", "", "Topics and rooms with subscribers (distinct patterns), and queues")
        registry.makeGauge(descriptor: destinations, labels: [("kind", "subscribed")]).set(Double(patterns.count))
        registry.makeGauge(descriptor: destinations, labels: [("kind", "queue")]).set(Double(queues.count))
        registry.makeGauge(descriptor: Self.name("queue_messages_ready", "", "Messages waiting in all queues")).set(Double(queues.reduce(0) { $0 + $1.ready }))
        registry.makeGauge(descriptor: Self.name("queue_messages_unacked", "", "Messages delivered and not yet acknowledged, all queues"))
            .set(Double(queues.reduce(0) { $0 + $1.unacked }))
        self.labelQueues(queues)
        Self.processGauges(registry)

        self.exported.withLockedValue { state in
            for (descriptor, labels, total) in totals {
                let key = descriptor.name + labels.map { "\($0.0)=\($0.1)" }.joined(separator: ",")
                let previous = state.totals[key] ?? 0
                // Registered at the first scrape, zero or not: a series that exists from the start makes rate() exact.
                let counter = registry.makeCounter(descriptor: descriptor, labels: labels)
                if total > previous { counter.increment(by: Int64(total - previous)) }
                state.totals[key] = max(previous, total)
            }
            // The WebSocket layer counts messages over the size limit per loop; they are limits hit like the others.
            let tooBig = sum(\.webSocketFailures.tooBig)
            let previous = state.totals["max-message-size"] ?? 0
            if tooBig > previous { self.limits[.maxMessageSize]?.increment(by: Int64(tooBig - previous)) }
            state.totals["max-message-size"] = max(previous, tooBig)
        }
    }

    /// Per-queue gauges for the `queueLabelLimit` deepest queues (bounded label cardinality); queues that drop out of
    /// that set lose their series.
    private func labelQueues(_ queues: [QueueStatistics]) {
        let top = queues.sorted { ($0.ready + $0.unacked, $1.destination) > ($1.ready + $1.unacked, $0.destination) }.prefix(self.queueLabelLimit)
        let ready = Self.name("queue_ready", "", "Messages waiting in a queue (the deepest queues only)")
        let unacked = Self.name("queue_unacked", "", "Messages of a queue delivered and not yet acknowledged (the deepest queues only)")
        let consumers = Self.name("queue_consumers", "", "Consumers of a queue (the deepest queues only)")
        let registry = self.registry
        for queue in top {
            let labels = [("queue", queue.destination)]
            registry.makeGauge(descriptor: ready, labels: labels).set(Double(queue.ready))
            registry.makeGauge(descriptor: unacked, labels: labels).set(Double(queue.unacked))
            registry.makeGauge(descriptor: consumers, labels: labels).set(Double(queue.consumers))
        }
        let now = Set(top.map(\.destination))
        let gone = self.exported.withLockedValue { state in
            defer { state.labelledQueues = now }
            return state.labelledQueues.subtracting(now)
        }
        for destination in gone {
            let labels = [("queue", destination)]
            registry.unregisterGauge(registry.makeGauge(descriptor: ready, labels: labels))
            registry.unregisterGauge(registry.makeGauge(descriptor: unacked, labels: labels))
            registry.unregisterGauge(registry.makeGauge(descriptor: consumers, labels: labels))
        }
    }

    /// Resident memory, open files and CPU time of this process, from /proc (Linux).
    private static func processGauges(_ registry: PrometheusCollectorRegistry) {
        let pageSize = Double(sysconf(Int32(_SC_PAGESIZE)))
        if let statm = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8),
            let resident = statm.split(separator: " ").dropFirst().first.flatMap({ Double($0) })
        {
            registry.makeGauge(descriptor: Self.name("process_resident_memory", "bytes", "Resident set size")).set(resident * pageSize)
        }
        if let files = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd") {
            registry.makeGauge(descriptor: Self.name("process_open_fds", "", "Open file descriptors")).set(Double(files.count))
        }
        var usage = rusage()
        if getrusage(RUSAGE_SELF.rawValue, &usage) == 0 {
            let seconds = Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
            registry.makeGauge(descriptor: Self.name("process_cpu", "seconds", "User and system CPU time used")).set(seconds)
        }
    }
}

/// The loops' delivery latencies, into the registry's histogram (a lock per delivered batch, not per message).
final class DeliveryLatencyHistogram: DeliveryLatencyRecorder {
    let histogram: DurationHistogram

    init(_ histogram: DurationHistogram) {
        self.histogram = histogram
    }

    func recordDeliveryLatency(nanoseconds: UInt64) {
        self.histogram.record(.nanoseconds(Int64(nanoseconds)))
    }
}

/// The store's group commits, into the registry's histograms.
final class StoreCommitHistograms: StoreCommitObserver {
    let metrics: ServerMetrics

    init(_ metrics: ServerMetrics) {
        self.metrics = metrics
    }

    func storeCommitted(operations: Int, nanoseconds: UInt64) {
        self.metrics.storeBatchSize.record(Double(operations))
        self.metrics.storeCommitDuration.record(.nanoseconds(Int64(nanoseconds)))
    }
}

/// Measures how late a timer runs on one event loop: a loop busy with long tasks (or starved of CPU) runs it late,
/// and every connection on it waits as long.
final class EventLoopLagProbe: @unchecked Sendable {
    static let period = TimeAmount.milliseconds(250)
    /// When the next run is due; touched only on the loop.
    private var due: NIODeadline

    private init() {
        self.due = .now() + Self.period
    }

    static func start(on eventLoop: any EventLoop, histogram: DurationHistogram) {
        let probe = EventLoopLagProbe()
        eventLoop.scheduleRepeatedTask(initialDelay: Self.period, delay: Self.period) { _ in
            let now = NIODeadline.now()
            histogram.record(.nanoseconds(max(0, (now - probe.due).nanoseconds)))
            probe.due = now + Self.period
        }
    }
}
