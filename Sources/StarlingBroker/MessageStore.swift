import NIOCore
import StarlingSTOMP

/// A message as the store keeps it: enough to rebuild the queue entry after a restart.
///
/// It holds the queue's own `BrokerMessage` (immutable and shared), so storing a message copies nothing on the
/// event loop: the store encodes the row on its writer thread.
public struct StoredMessage: Sendable, Equatable {
    /// Unique and increasing per store; orders a queue's messages on recovery.
    public var storeID: UInt64
    public var queue: String
    /// Its `destination` is the message's own destination (the topic, for a durable subscription's queue).
    public var message: BrokerMessage
    public var expiresAt: Int64?
    public var deliveryCount: Int

    public init(storeID: UInt64, queue: String, message: BrokerMessage, expiresAt: Int64?, deliveryCount: Int) {
        self.storeID = storeID
        self.queue = queue
        self.message = message
        self.expiresAt = expiresAt
        self.deliveryCount = deliveryCount
    }

    public static func == (lhs: StoredMessage, rhs: StoredMessage) -> Bool {
        lhs.storeID == rhs.storeID && lhs.queue == rhs.queue && lhs.expiresAt == rhs.expiresAt
            && lhs.deliveryCount == rhs.deliveryCount && lhs.message.destination == rhs.message.destination
            && lhs.message.messageID == rhs.message.messageID && lhs.message.headers == rhs.message.headers
            && lhs.message.body == rhs.message.body
    }
}

extension BrokerMessage {
    /// The headers a store keeps: the MESSAGE headers without `destination` and `message-id` (kept in their own
    /// columns), in order.
    public var storedHeaders: some Sequence<STOMPHeaders.Element> {
        self.headers.lazy.filter { $0.name != "destination" && $0.name != "message-id" }
    }
}

/// A message a room (or a topic with history) keeps for history and resume (docs/rooms.md).
public struct KeptMessage: Sendable, Equatable {
    /// The room's or topic's destination.
    public var stream: String
    public var epoch: String
    /// Wall-clock ms when the room kept it (its history TTL counts from here).
    public var keptAt: Int64
    /// Its `offset` is its place in the room's stream; its headers include `x-offset`, `x-epoch` and `user-name`.
    public var message: BrokerMessage

    public init(stream: String, epoch: String, keptAt: Int64, message: BrokerMessage) {
        self.stream = stream
        self.epoch = epoch
        self.keptAt = keptAt
        self.message = message
    }

    public static func == (lhs: KeptMessage, rhs: KeptMessage) -> Bool {
        lhs.stream == rhs.stream && lhs.epoch == rhs.epoch && lhs.keptAt == rhs.keptAt && lhs.message.offset == rhs.message.offset
            && lhs.message.messageID == rhs.message.messageID && lhs.message.headers == rhs.message.headers
            && lhs.message.body == rhs.message.body
    }
}

/// One change to the stored state. A batch of them is applied atomically and in order.
public enum StoreOperation: Sendable, Equatable {
    case insert(StoredMessage)
    /// Acknowledged, expired, dropped, or moved to a dead-letter queue (with an `insert` in the same batch).
    case delete(storeID: UInt64)
    /// Delivered once more: the count survives a crash, so the dead-letter limit does too.
    case setDeliveryCount(storeID: UInt64, count: Int)
    case saveBinding(queue: String, pattern: String)
    /// A durable subscription ended: its binding goes (its queue's messages go with a `delete` each, in the same
    /// batch: the store keeps no index by queue, which would cost every insert and delete a second b-tree write).
    case deleteBinding(queue: String)
    /// A room or topic keeps a message (its history).
    case keepMessage(KeptMessage)
    /// A room or topic no longer keeps its messages up to and including `offset` (pushed out or expired).
    case trimStream(stream: String, through: UInt64)
}

/// What a store held at start.
public struct StoreContents: Sendable {
    /// Every stored message, in `storeID` order.
    public var messages: [StoredMessage]
    /// Durable subscriptions: queue -> topic pattern.
    public var bindings: [(queue: String, pattern: String)]
    public var nextStoreID: UInt64
    /// What rooms and topics keep for history, by stream and offset.
    public var keptMessages: [KeptMessage]

    public init(
        messages: [StoredMessage] = [], bindings: [(queue: String, pattern: String)] = [], nextStoreID: UInt64 = 1,
        keptMessages: [KeptMessage] = []
    ) {
        self.messages = messages
        self.bindings = bindings
        self.nextStoreID = nextStoreID
        self.keptMessages = keptMessages
    }
}

public struct StoreError: Error, CustomStringConvertible, Sendable, Equatable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Where persistent messages live (DESIGN.md: one writer per store, many messages per transaction and fsync).
/// `submit` may be called from any thread; batches are applied in submission order; `completion` runs on the
/// store's writer thread once the batch is durable (per the store's sync policy) or failed.
public protocol MessageStore: Sendable {
    /// Reads everything stored. Called once, before the server accepts connections.
    func recover() throws(StoreError) -> StoreContents
    func submit(_ operations: [StoreOperation], completion: (@Sendable (StoreError?) -> Void)?)
    /// Applies what was submitted, then closes. Later submissions fail.
    func close()
}
