import NIOCore

/// What a slow connection's subscribers are owed while its socket is full (DESIGN.md: "Every connection has a
/// bounded outbound budget"), held per each destination's `slow-consumer` policy until the socket drains.
///
/// Two parts. Lossless items (messages under `disconnect`, history and snapshots, RECEIPTs and other frames) wait in
/// one FIFO, so their order holds across subscriptions (a room's RECEIPT still follows its history). Lossy messages
/// (`conflate`, `drop-oldest`) wait per subscription in `HeldDeliveries`; they go out after the FIFO, round-robin
/// over subscriptions. `bytes` counts everything held; the connection disconnects past its budget.
///
/// Event-loop-bound: owned by one connection.
public final class OutboundBacklog {
    public enum Item {
        /// A MESSAGE for `subscription`; `marks` are extra header lines (e.g. `x-dropped:3\n`).
        case message(BrokerMessage, TopicSubscription, marks: ByteBuffer?)
        /// An encoded frame that is not a topic delivery (RECEIPT, a queue MESSAGE).
        case frame(head: ByteBuffer?, body: ByteBuffer, isText: Bool)
    }

    private var ordered = CircularBuffer<Item>()
    private var lossy: [ObjectIdentifier: HeldDeliveries] = [:]
    private var rotation = CircularBuffer<HeldDeliveries>()
    /// Subscriptions ended while items for them were still ordered: those are skipped.
    private var ended: Set<ObjectIdentifier> = []
    public private(set) var bytes = 0
    /// Messages replaced by a newer one (`conflate`) and dropped (`drop-oldest`) so far, for metrics.
    public private(set) var conflatedCount = 0
    public private(set) var droppedCount = 0

    public init() {}

    public var isEmpty: Bool { self.ordered.isEmpty && self.rotation.isEmpty }

    /// Size a held delivery is counted as: its shared part plus a typical per-subscriber head.
    static func size(of message: BrokerMessage) -> Int { message.sharedSize + 48 }

    /// Holds an encoded frame behind everything held so far.
    public func append(head: ByteBuffer?, body: ByteBuffer, isText: Bool) {
        self.ordered.append(.frame(head: head, body: body, isText: isText))
        self.bytes += (head?.readableBytes ?? 0) + body.readableBytes
    }

    /// Holds a delivery that must not be lost (history, a snapshot), in order.
    public func append(_ message: BrokerMessage, to subscription: TopicSubscription, marks: ByteBuffer?) {
        self.ordered.append(.message(message, subscription, marks: marks))
        self.bytes += Self.size(of: message) + (marks?.readableBytes ?? 0)
    }

    /// Holds a live delivery as `policy` says.
    public func hold(_ message: BrokerMessage, for subscription: TopicSubscription, policy: DeliveryPolicy) {
        switch policy.slowConsumer {
        case .disconnect:
            self.append(message, to: subscription, marks: nil)
        case .conflate:
            let (added, replaced) = self.held(for: subscription).conflate(message)
            self.bytes += added
            if replaced { self.conflatedCount += 1 }
        case .dropOldest:
            let (added, dropped) = self.held(for: subscription).append(message, limit: policy.maxPendingMessages)
            self.bytes += added
            self.droppedCount += dropped
        }
    }

    private func held(for subscription: TopicSubscription) -> HeldDeliveries {
        let id = ObjectIdentifier(subscription)
        if let held = self.lossy[id] { return held }
        let held = HeldDeliveries(subscription: subscription)
        self.lossy[id] = held
        self.rotation.append(held)
        return held
    }

    /// The next item to write: the ordered ones first, then one lossy message per subscription in turn.
    public func next() -> Item? {
        while let item = self.ordered.popFirst() {
            switch item {
            case .frame(let head, let body, _):
                self.bytes -= (head?.readableBytes ?? 0) + body.readableBytes
                return item
            case .message(let message, let subscription, let marks):
                self.bytes -= Self.size(of: message) + (marks?.readableBytes ?? 0)
                if self.ended.isEmpty || !self.ended.contains(ObjectIdentifier(subscription)) { return item }
            }
        }
        self.ended.removeAll()
        guard let held = self.rotation.popFirst() else { return nil }
        let (message, dropped) = held.popFirst()
        self.bytes -= Self.size(of: message)
        if held.isEmpty {
            self.lossy[ObjectIdentifier(held.subscription)] = nil
        } else {
            self.rotation.append(held)
        }
        return .message(message, held.subscription, marks: dropped > 0 ? ByteBuffer(string: "x-dropped:\(dropped)\n") : nil)
    }

    /// `subscription` ended (UNSUBSCRIBE): nothing more is written for it.
    public func remove(_ subscription: TopicSubscription) {
        let id = ObjectIdentifier(subscription)
        if let held = self.lossy.removeValue(forKey: id) {
            self.bytes -= held.bytes
            self.rotation.removeAll { $0 === held }
        }
        if !self.ordered.isEmpty { self.ended.insert(id) }
    }
}

/// The lossy messages held for one subscription of a slow connection: a FIFO in which a `conflate` message replaces
/// the pending one of its key in place, and `drop-oldest` drops from the front past its limit.
final class HeldDeliveries {
    let subscription: TopicSubscription
    private var entries = CircularBuffer<Entry>()
    /// Sequence number of `entries.first`; an entry's sequence is its position since the first ever held.
    private var firstSequence = 0
    /// The sequence of the pending entry of each conflated key.
    private var slots: [ConflationKey: Int] = [:]
    /// Messages dropped from the front since the last one taken.
    private var dropped = 0
    private(set) var bytes = 0

    private struct Entry {
        var message: BrokerMessage
        var key: ConflationKey?
    }

    init(subscription: TopicSubscription) {
        self.subscription = subscription
    }

    var isEmpty: Bool { self.entries.isEmpty }
    var count: Int { self.entries.count }

    /// Holds `message` as the newest of its key: replaces the pending one in place (keeping its turn), else queues.
    /// Returns the change in held bytes and whether a pending message was replaced.
    func conflate(_ message: BrokerMessage) -> (bytes: Int, replaced: Bool) {
        let key = ConflationKey(message)
        let size = OutboundBacklog.size(of: message)
        if let sequence = self.slots[key] {
            let index = self.entries.index(self.entries.startIndex, offsetBy: sequence - self.firstSequence)
            let old = OutboundBacklog.size(of: self.entries[index].message)
            self.entries[index].message = message
            self.bytes += size - old
            return (size - old, true)
        }
        self.slots[key] = self.firstSequence + self.entries.count
        self.entries.append(Entry(message: message, key: key))
        self.bytes += size
        return (size, false)
    }

    /// Queues `message`, then drops from the front while more than `limit` are held. Returns the change in held bytes
    /// and how many were dropped.
    func append(_ message: BrokerMessage, limit: Int) -> (bytes: Int, dropped: Int) {
        let before = self.bytes
        self.entries.append(Entry(message: message, key: nil))
        self.bytes += OutboundBacklog.size(of: message)
        var dropped = 0
        while self.entries.count > max(limit, 1) {
            _ = self.removeFirst()
            dropped += 1
        }
        self.dropped += dropped
        return (self.bytes - before, dropped)
    }

    /// The oldest held message, and how many were dropped just before it.
    func popFirst() -> (BrokerMessage, dropped: Int) {
        let message = self.removeFirst()
        defer { self.dropped = 0 }
        return (message, self.dropped)
    }

    private func removeFirst() -> BrokerMessage {
        let entry = self.entries.removeFirst()
        if let key = entry.key, self.slots[key] == self.firstSequence { self.slots[key] = nil }
        self.firstSequence += 1
        self.bytes -= OutboundBacklog.size(of: entry.message)
        return entry.message
    }
}
