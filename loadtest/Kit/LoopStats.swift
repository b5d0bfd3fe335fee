import Atomics
import NIOCore

/// One event loop's share of the measurements. Touched only on its loop (no locks on the hot path); the
/// runner reads a `LoopSnapshot` through `EventLoop.submit` and merges the loops at the end.
final class LoopStats {
    let index: Int
    let plan: RunPlan
    var tally = VerificationTally()
    var latency = LatencyHistogram()
    var sentTotal: UInt64 = 0
    /// Sent inside the measured window.
    var sentMeasured: UInt64 = 0
    /// Received inside the measured window.
    var deliveredMeasured: UInt64 = 0
    /// Messages sent per destination index (for `expected`).
    var sentPerDestination: [UInt64]
    /// Queue scenario: which sequence numbers of (producer, queue) arrived on this loop, index
    /// `producer * queues + queue`.
    var seen: [SeenSet]
    var opened = 0
    var failed = 0
    var dropped = 0
    var errors: [String] = []
    /// Measured window, monotonic ns: [start, end). `UInt64.max` until the runner sets it.
    var measureStart: UInt64 = .max
    var measureEnd: UInt64 = .max
    var publishing = false
    /// Deliveries this loop's publishers made due (sent x subscribers), mirrored into the flow window.
    var expectedDeliveries = 0
    /// Publishers on this loop with a fixed rate, driven by one timer per loop.
    var pacedPublishers = PacingHeap<ClientConnection>()
    var pacer: RepeatedTask?
    /// Inflated payloads shared by this loop's connections (see `InflateCache`).
    let inflateCache = InflateCache()
    /// Live connections on this loop, for closing at the end.
    var connections: [ObjectIdentifier: ClientConnection] = [:]
    /// `--stalled-percent`: this loop's stalled subscribers (counted when they stop reading), how many of them
    /// the broker closed (ERROR, close frame or TCP end; seen once their backlog is read), the MESSAGEs and
    /// bytes they read after they resumed at the end, and the distinct reasons the broker gave.
    var stalledConnections = 0
    var stalledClosed = 0
    var stalledDelivered: UInt64 = 0
    var stalledBytes: UInt64 = 0
    var stalledCloseReasons: [String] = []

    init(index: Int, plan: RunPlan) {
        self.index = index
        self.plan = plan
        self.sentPerDestination = Array(repeating: 0, count: plan.destinations.count)
        self.seen = plan.scenario == .queue ? Array(repeating: SeenSet(), count: plan.publisherCount * plan.destinations.count) : []
    }

    func addError(_ message: String) {
        if self.errors.count < 20 && !self.errors.contains(message) {
            self.errors.append(message)
        }
    }

    /// Publishes this loop's running delivered count for the flow window (a relaxed store: a plain move).
    @inline(__always)
    func publishFlow() {
        self.plan.flow.delivered[self.index].store(Int(truncatingIfNeeded: self.tally.delivered), ordering: .relaxed)
    }

    func snapshot(withLatency: Bool = true, withSeen: Bool = false) -> LoopSnapshot {
        LoopSnapshot(
            tally: self.tally, latency: withLatency ? self.latency : nil, sentTotal: self.sentTotal,
            sentMeasured: self.sentMeasured, deliveredMeasured: self.deliveredMeasured,
            sentPerDestination: self.sentPerDestination, seen: withSeen ? self.seen : [],
            opened: self.opened, failed: self.failed, dropped: self.dropped, errors: self.errors,
            connections: self.connections.count,
            stalled: StalledSnapshot(
                connections: self.stalledConnections, closed: self.stalledClosed, delivered: self.stalledDelivered,
                bytes: self.stalledBytes, closeReasons: self.stalledCloseReasons)
        )
    }
}

/// A copy of one loop's figures, safe to hand to another thread.
struct LoopSnapshot: Sendable {
    var tally: VerificationTally
    var latency: LatencyHistogram?
    var sentTotal: UInt64
    var sentMeasured: UInt64
    var deliveredMeasured: UInt64
    var sentPerDestination: [UInt64]
    var seen: [SeenSet]
    var opened: Int
    var failed: Int
    var dropped: Int
    var errors: [String]
    var connections: Int
    var stalled: StalledSnapshot
}

/// One loop's stalled subscribers (see `LoopStats.stalledConnections`).
struct StalledSnapshot: Sendable {
    var connections: Int
    var closed: Int
    var delivered: UInt64
    var bytes: UInt64
    var closeReasons: [String]
}

/// End-to-end flow control for `--rate 0`: publishers stop while more than `limit` deliveries are
/// outstanding (sent x subscribers - delivered, summed over loops). Each loop writes only its own slots.
final class FlowWindow: Sendable {
    let expected: [ManagedAtomic<Int>]
    let delivered: [ManagedAtomic<Int>]
    let limit: Int

    init(loops: Int, limit: Int) {
        self.expected = (0..<loops).map { _ in ManagedAtomic(0) }
        self.delivered = (0..<loops).map { _ in ManagedAtomic(0) }
        self.limit = limit
    }

    @inline(__always)
    var outstanding: Int {
        var total = 0
        for index in self.expected.indices {
            total &+= self.expected[index].load(ordering: .relaxed) &- self.delivered[index].load(ordering: .relaxed)
        }
        return total
    }
}

/// What every connection of a run shares: immutable after creation.
final class RunPlan: Sendable {
    let scenario: Scenario
    let configuration: LoadtestConfiguration
    /// Random per run, so messages of another run (left in a queue) are recognised as foreign.
    let runID: String
    let destinations: [String]
    let destinationBytes: [[UInt8]]
    let runIDBytes: [UInt8]
    /// How many subscriptions each destination has (a queue counts as 1: one consumer gets each message).
    let deliveriesPerMessage: [Int]
    let publisherCount: Int
    let payload: [UInt8]
    /// SENDs carry `persistent:true` and a receipt (`--persistent`).
    let persistent: Bool
    let flow: FlowWindow
    let maxDeliveriesPerMessage: Int
    /// fanout `--stalled-percent`: which subscribers of each topic stall (none without the option).
    let stalled: StalledSelection

    init(configuration: LoadtestConfiguration, loops: Int) {
        self.scenario = configuration.scenario
        self.configuration = configuration
        var generator = SystemRandomNumberGenerator()
        self.runID = String(UInt32.random(in: 0...UInt32.max, using: &generator), radix: 36)
        let prefix = "lt-\(self.runID)"
        switch configuration.scenario {
        case .fanout:
            self.destinations = (0..<configuration.topics).map { "/topic/\(prefix).t\($0)" }
            // Only the healthy subscribers are expected to receive (and count against the flow window).
            let stalled = StalledSelection(subscribers: configuration.subscribers, percent: configuration.stalledPercent ?? 0)
            self.deliveriesPerMessage = Array(repeating: stalled.healthy, count: configuration.topics)
            self.publisherCount = configuration.publishers
        case .rooms:
            let kind = configuration.roomDestinations ? "/room/" : "/topic/"
            self.destinations = (0..<configuration.rooms).map { "\(kind)\(prefix).room\($0)" }
            self.deliveriesPerMessage = Array(repeating: configuration.members, count: configuration.rooms)
            self.publisherCount = configuration.rooms * configuration.members
        case .queue:
            // Fixed names, so RabbitMQ reuses its durable queues across runs; the run id tells runs apart.
            self.destinations = (0..<configuration.queues).map { "/queue/starling-loadtest.q\($0)" }
            self.deliveriesPerMessage = Array(repeating: 1, count: configuration.queues)
            self.publisherCount = configuration.publishers
        case .connections:
            self.destinations = []
            self.deliveriesPerMessage = []
            self.publisherCount = 0
        }
        self.destinationBytes = self.destinations.map { Array($0.utf8) }
        self.runIDBytes = Array(self.runID.utf8)
        // The letter 'x' fills the body: compressible, like most real payloads.
        self.payload = Array(repeating: UInt8(ascii: "x"), count: configuration.payloadBytes)
        self.persistent = configuration.persistent
        // Little's law: at rate 0 the latency is about window / throughput. A larger window lets both sides
        // batch more messages per read and write (more throughput), a smaller one builds shorter queues.
        let subscriptions = self.deliveriesPerMessage.reduce(0, +)
        let window = configuration.inFlightPerSubscription
        self.flow = FlowWindow(loops: loops, limit: max(window * 16, subscriptions * window))
        self.maxDeliveriesPerMessage = max(1, self.deliveriesPerMessage.max() ?? 1)
        self.stalled = configuration.scenario == .fanout
            ? StalledSelection(subscribers: configuration.subscribers, percent: configuration.stalledPercent ?? 0)
            : StalledSelection(subscribers: 0, percent: 0)
    }
}
