import NIOCore

/// A message on its way into a queue, and whom to tell how it went.
public struct QueueEnqueue: Sendable {
    public var destination: String
    public var message: BrokerMessage
    /// Wall-clock ms since 1970, or nil (the queue's default TTL applies).
    public var expiresAt: Int64?
    /// Delivery count carried over (dead-lettered messages keep theirs).
    public var deliveryCount: Int = 0
    /// Where to report the outcome: nil when nobody waits (dead letters).
    public var reply: QueueReply?
    /// Already in the store under this id (recovered at start, or a dead letter written with its removal).
    public var storeID: UInt64?
    /// Collected by a durable subscription's binding; dropped if the subscription ended before it got in.
    var viaBinding = false

    public init(destination: String, message: BrokerMessage, expiresAt: Int64?, reply: QueueReply?) {
        self.destination = destination
        self.message = message
        self.expiresAt = expiresAt
        self.reply = reply
    }
}

/// The producing connection of an enqueue: the owning loop posts the outcome back to `loopIndex`.
public struct QueueReply: @unchecked Sendable {
    public let loopIndex: Int
    /// Touched only on `loopIndex` (see `QueueSubscription` for the same rule).
    public let sink: MessageSink
    public let token: UInt64
    /// True when the producer waits for success too (a receipt); otherwise only a refusal is reported.
    public let wantsSuccess: Bool

    public init(loopIndex: Int, sink: MessageSink, token: UInt64, wantsSuccess: Bool) {
        self.loopIndex = loopIndex
        self.sink = sink
        self.token = token
        self.wantsSuccess = wantsSuccess
    }
}

/// Work for a loop's `QueueHost`, posted in order from one loop to another once per tick.
enum QueueCommand: Sendable {
    // To the owning loop of `destination`:
    case enqueue(QueueEnqueue)
    case addConsumer(QueueSubscription)
    case removeConsumer(destination: String, consumerID: UInt64)
    /// `reply`: the ACK asked for a receipt, answered once the removal is durable.
    case acknowledge(destination: String, tags: [UInt64], reply: QueueReply?)
    case reject(destination: String, tags: [UInt64], requeue: Bool)
    case returnUndelivered(destination: String, tags: [UInt64])
    /// Durable topic subscription: topic messages matching `pattern` are kept in `queue` (created if needed).
    case bindDurable(queue: String, pattern: String, words: [Substring])
    /// The durable subscription ends: the binding and its queue (with what it held) are deleted.
    case unbindDurable(queue: String)
    // To a consumer's loop:
    case deliver(QueueSubscription, QueueDispatch)
    // To a producer's loop:
    case enqueued(QueueReply, refusal: String?)
    /// Room traffic shares the queues' ordered hops (`RoomHost`).
    case room(RoomCommand)
}
