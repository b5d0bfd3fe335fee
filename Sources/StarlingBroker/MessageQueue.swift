import NIOCore

/// A message waiting in a queue or delivered and not yet acknowledged.
public struct QueuedMessage: Sendable {
    public let message: BrokerMessage
    /// Order of arrival in this queue (requeued messages go back in this order).
    public let sequence: UInt64
    /// Deliveries so far (0 while it was never delivered).
    public var deliveryCount: Int
    /// Wall-clock expiry in ms since 1970, or nil.
    public let expiresAt: Int64?
    /// Set when the message is in the store (sent with `persistent:true`).
    public var storeID: UInt64?

    public var size: Int { self.message.body.readableBytes }
}

/// Why a message left its queue for the dead-letter queue (the `x-death-reason` header).
public enum DeadLetterReason: String, Sendable {
    /// NACKed with `requeue:false`.
    case rejected
    /// Delivered `maxDeliveries` times without an ACK.
    case deliveryLimit = "delivery-limit"
    case expired
    /// Dropped from the head of a full queue (`drop-head`).
    case maxLength = "max-length"
}

public struct DeadLetter: Sendable {
    public let message: QueuedMessage
    public let reason: DeadLetterReason
}

/// One delivery decided by the queue: `message` (its `deliveryCount` already counts this delivery) to `consumer`.
public struct QueueDispatch: Sendable {
    public let consumer: UInt64
    public let tag: UInt64
    public let message: QueuedMessage
}

/// The point-to-point state of one `/queue/` destination, without I/O: messages wait in arrival order, each is
/// given to one consumer with credit (round-robin; a consumer's credit is its prefetch minus its unacknowledged
/// deliveries), and an ACK removes it, while a NACK or a consumer leaving puts it back at the front, until it was
/// delivered `maxDeliveries` times and goes to the dead-letter queue.
///
/// Time is passed in (`now`, ms since 1970), so tests drive expiry with an injected clock. Lives on the queue's
/// owning event loop (DESIGN.md threading model). Consumers are opaque ids given by the caller.
public struct MessageQueue {
    public enum EnqueueResult: Sendable {
        /// Accepted; with `drop-head` the messages that made room are dead-lettered.
        case accepted(deadLettered: [DeadLetter])
        /// Refused (`reject-publish` on a full queue): the reason for the producer.
        case rejected(String)
    }

    private struct Consumer {
        let id: UInt64
        /// 0 = unlimited.
        let prefetch: Int
        var inFlight = 0

        var hasCredit: Bool { self.prefetch == 0 || self.inFlight < self.prefetch }
    }

    public let destination: String
    /// Replaced when the configuration is reloaded (SIGHUP); what it limits is checked against the current one.
    public internal(set) var policy: QueuePolicy
    private var ready = CircularBuffer<QueuedMessage>()
    private var unacked: [UInt64: (consumer: UInt64, message: QueuedMessage)] = [:]
    private var consumers: [Consumer] = []
    private var nextConsumer = 0
    private var nextTag: UInt64 = 1
    private var nextSequence: UInt64 = 1
    /// Ready messages that carry an expiry (the periodic sweep skips queues without any).
    private var expiring = 0
    /// Body bytes of the ready messages.
    public private(set) var readyBytes = 0
    /// Messages dropped because they expired with `expiredAction = drop`.
    public private(set) var droppedExpired = 0
    /// Store ids of stored messages that left the queue (acknowledged, or dropped) since the last
    /// `drainRemovedStoreIDs`: the owner deletes them from the store. Dead letters are not in it (the owner moves them).
    private var removedStoreIDs: [UInt64] = []

    public init(destination: String, policy: QueuePolicy) {
        self.destination = destination
        self.policy = policy
    }

    public var readyCount: Int { self.ready.count }
    public var unackedCount: Int { self.unacked.count }
    public var consumerCount: Int { self.consumers.count }
    /// True when the queue holds nothing and nobody consumes (it may be forgotten).
    public var isIdle: Bool { self.ready.isEmpty && self.unacked.isEmpty && self.consumers.isEmpty }

    // MARK: producing

    /// Appends `message`; `deliveryCount` > 0 for a message that comes from elsewhere with a history.
    public mutating func enqueue(
        _ message: BrokerMessage, expiresAt: Int64?, deliveryCount: Int = 0, storeID: UInt64? = nil
    ) -> EnqueueResult {
        var deadLettered: [DeadLetter] = []
        let size = message.body.readableBytes
        while self.ready.count >= self.policy.maxLength || self.readyBytes + size > self.policy.maxBytes {
            guard self.policy.overflow == .dropHead, !self.ready.isEmpty else {
                if self.ready.count >= self.policy.maxLength {
                    return .rejected("queue '\(self.destination)' is full (max-length \(self.policy.maxLength) messages)")
                }
                return .rejected("queue '\(self.destination)' is full (max-bytes \(self.policy.maxBytes))")
            }
            deadLettered.append(DeadLetter(message: self.removeFirstReady(), reason: .maxLength))
        }
        let queued = QueuedMessage(
            message: message, sequence: self.nextSequence, deliveryCount: deliveryCount, expiresAt: expiresAt,
            storeID: storeID
        )
        self.nextSequence += 1
        self.appendReady(queued)
        return .accepted(deadLettered: deadLettered)
    }

    // MARK: consumers

    public mutating func addConsumer(_ id: UInt64, prefetch: Int) {
        precondition(!self.consumers.contains { $0.id == id }, "consumer \(id) added twice")
        self.consumers.append(Consumer(id: id, prefetch: max(prefetch, 0)))
    }

    /// Removes the consumer and puts its unacknowledged messages back (or dead-letters those at the limit).
    public mutating func removeConsumer(_ id: UInt64) -> [DeadLetter] {
        guard let index = self.consumers.firstIndex(where: { $0.id == id }) else { return [] }
        self.consumers.remove(at: index)
        if self.nextConsumer > index { self.nextConsumer -= 1 }
        if self.nextConsumer >= self.consumers.count { self.nextConsumer = 0 }
        let tags = self.unacked.compactMap { $0.value.consumer == id ? $0.key : nil }
        return self.requeue(tags, countsAsDelivery: true)
    }

    // MARK: dispatching

    /// Gives ready messages to consumers with credit, round-robin, until either runs out. Expired messages met
    /// on the way are dead-lettered (or dropped, per policy) instead.
    public mutating func dispatch(now: Int64) -> (dispatches: [QueueDispatch], deadLettered: [DeadLetter]) {
        var dispatches: [QueueDispatch] = []
        var deadLettered: [DeadLetter] = []
        while !self.ready.isEmpty, let slot = self.nextConsumerWithCredit() {
            var message = self.removeFirstReady()
            if let expiresAt = message.expiresAt, expiresAt < now {
                self.expired(message, into: &deadLettered)
                continue
            }
            message.deliveryCount += 1
            let tag = self.nextTag
            self.nextTag += 1
            self.consumers[slot].inFlight += 1
            self.unacked[tag] = (self.consumers[slot].id, message)
            dispatches.append(QueueDispatch(consumer: self.consumers[slot].id, tag: tag, message: message))
        }
        return (dispatches, deadLettered)
    }

    private mutating func nextConsumerWithCredit() -> Int? {
        let count = self.consumers.count
        guard count > 0 else { return nil }
        for step in 0..<count {
            let slot = (self.nextConsumer + step) % count
            if self.consumers[slot].hasCredit {
                self.nextConsumer = (slot + 1) % count
                return slot
            }
        }
        return nil
    }

    // MARK: settling

    /// The consumer is done with these deliveries (ACK, or written in `auto` mode). Unknown tags are ignored.
    public mutating func acknowledge(_ tags: [UInt64]) {
        for tag in tags {
            guard let (consumer, message) = self.unacked.removeValue(forKey: tag) else { continue }
            self.releaseCredit(consumer)
            if let storeID = message.storeID { self.removedStoreIDs.append(storeID) }
        }
    }

    /// Store ids of every stored message the queue holds, ready or unacknowledged.
    public var storeIDs: [UInt64] {
        self.ready.compactMap(\.storeID) + self.unacked.values.compactMap(\.message.storeID)
    }

    /// Store ids of stored messages that left the queue since the last call (see `removedStoreIDs`).
    public mutating func drainRemovedStoreIDs() -> [UInt64] {
        defer { self.removedStoreIDs.removeAll() }
        return self.removedStoreIDs
    }

    /// Removes a ready message (its store write failed, so its producer is told it was refused). False when it
    /// was already delivered.
    @discardableResult
    public mutating func removeReady(storeID: UInt64) -> Bool {
        guard let index = self.ready.firstIndex(where: { $0.storeID == storeID }) else { return false }
        let message = self.ready.remove(at: index)
        self.readyBytes -= message.size
        if message.expiresAt != nil { self.expiring -= 1 }
        return true
    }

    /// Takes every ready message out (a purge, or a dead-letter queue moved back); unacknowledged ones stay.
    public mutating func removeAllReady() -> [QueuedMessage] {
        var removed: [QueuedMessage] = []
        removed.reserveCapacity(self.ready.count)
        while !self.ready.isEmpty { removed.append(self.removeFirstReady()) }
        return removed
    }

    /// NACK: back to the front of the queue (`requeue`), or to the dead-letter queue.
    public mutating func reject(_ tags: [UInt64], requeue: Bool) -> [DeadLetter] {
        guard !requeue else { return self.requeue(tags, countsAsDelivery: true) }
        var deadLettered: [DeadLetter] = []
        for tag in tags {
            guard let (consumer, message) = self.unacked.removeValue(forKey: tag) else { continue }
            self.releaseCredit(consumer)
            deadLettered.append(DeadLetter(message: message, reason: .rejected))
        }
        return deadLettered
    }

    /// Deliveries that never reached their consumer (it left before the MESSAGE was written): back to the front,
    /// and the attempt does not count.
    public mutating func returnUndelivered(_ tags: [UInt64]) {
        _ = self.requeue(tags, countsAsDelivery: false)
    }

    /// Puts unacknowledged messages back at the front in arrival order, or dead-letters those that reached
    /// `maxDeliveries`.
    private mutating func requeue(_ tags: [UInt64], countsAsDelivery: Bool) -> [DeadLetter] {
        var back: [QueuedMessage] = []
        var deadLettered: [DeadLetter] = []
        for tag in tags {
            guard let (consumer, delivered) = self.unacked.removeValue(forKey: tag) else { continue }
            self.releaseCredit(consumer)
            var message = delivered
            if !countsAsDelivery {
                message.deliveryCount -= 1
            } else if message.deliveryCount >= self.policy.maxDeliveries {
                deadLettered.append(DeadLetter(message: message, reason: .deliveryLimit))
                continue
            }
            back.append(message)
        }
        // Prepending the latest first leaves the front in arrival order.
        for message in back.sorted(by: { $0.sequence > $1.sequence }) {
            self.ready.prepend(message)
            self.readyBytes += message.size
            if message.expiresAt != nil { self.expiring += 1 }
        }
        return deadLettered
    }

    private mutating func releaseCredit(_ consumer: UInt64) {
        if let slot = self.consumers.firstIndex(where: { $0.id == consumer }) {
            self.consumers[slot].inFlight -= 1
        }
    }

    // MARK: expiry

    /// Removes every ready message expired by `now` (dead-lettered or dropped per policy).
    public mutating func expire(now: Int64) -> [DeadLetter] {
        guard self.expiring > 0 else { return [] }
        var deadLettered: [DeadLetter] = []
        var kept = CircularBuffer<QueuedMessage>(initialCapacity: self.ready.count)
        while !self.ready.isEmpty {
            let message = self.removeFirstReady()
            if let expiresAt = message.expiresAt, expiresAt < now {
                self.expired(message, into: &deadLettered)
            } else {
                kept.append(message)
            }
        }
        for message in kept { self.appendReady(message) }
        return deadLettered
    }

    private mutating func expired(_ message: QueuedMessage, into deadLettered: inout [DeadLetter]) {
        switch self.policy.expiredAction {
        case .deadLetter: deadLettered.append(DeadLetter(message: message, reason: .expired))
        case .drop:
            self.droppedExpired += 1
            if let storeID = message.storeID { self.removedStoreIDs.append(storeID) }
        }
    }

    private mutating func appendReady(_ message: QueuedMessage) {
        self.ready.append(message)
        self.readyBytes += message.size
        if message.expiresAt != nil { self.expiring += 1 }
    }

    private mutating func removeFirstReady() -> QueuedMessage {
        let message = self.ready.removeFirst()
        self.readyBytes -= message.size
        if message.expiresAt != nil { self.expiring -= 1 }
        return message
    }
}
