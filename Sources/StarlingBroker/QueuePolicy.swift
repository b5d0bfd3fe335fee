/// `/queue/` destinations: names, and the policy each queue follows.
public enum QueueName {
    public static let prefix = "/queue/"
    /// The dead-letter queue of `/queue/x` is `/queue/x` + this suffix (by default `/queue/x.dlq`).
    public static let defaultDeadLetterSuffix = ".dlq"

    /// Why `destination` is not a usable queue destination, or nil when it is.
    public static func problem(_ destination: String) -> String? {
        guard destination.hasPrefix(Self.prefix) else { return "'\(destination)' is not a /queue/ destination" }
        let name = destination.utf8.dropFirst(Self.prefix.utf8.count)
        if name.isEmpty { return "the queue name is empty" }
        if destination.utf8.count > TopicName.maxLength { return "the destination is longer than \(TopicName.maxLength) bytes" }
        if name.contains(where: { $0 < 0x20 || $0 == 0x7F }) { return "the queue name contains a control character" }
        if name.contains(where: { $0 == UInt8(ascii: "*") || $0 == UInt8(ascii: "#") }) {
            return "'\(destination)' contains a wildcard ('*' or '#'); queues are addressed by exact name"
        }
        return nil
    }
}

/// How a queue treats its messages. One policy per queue, resolved when the queue is created.
public struct QueuePolicy: Sendable, Equatable {
    public enum Overflow: String, Sendable {
        /// A SEND to a full queue fails (ERROR, with `receipt-id` when it asked for a receipt).
        case rejectPublish = "reject-publish"
        /// The oldest ready message is dead-lettered to make room.
        case dropHead = "drop-head"
    }

    public enum ExpiredAction: String, Sendable {
        case deadLetter = "dead-letter"
        case drop
    }

    /// A message delivered this many times and then NACKed or returned goes to the dead-letter queue.
    public var maxDeliveries = 5
    /// Appended to the queue's destination to name its dead-letter queue.
    public var deadLetterSuffix = QueueName.defaultDeadLetterSuffix
    /// Time to live (ms) of messages that carry no `expires`/`ttl`/`expiration` header; nil = forever.
    public var defaultTTL: Int64?
    public var expiredAction = ExpiredAction.deadLetter
    /// Ready messages (waiting for a consumer) the queue holds at most; unacknowledged ones are bounded by the
    /// consumers' prefetch.
    public var maxLength = 100_000
    /// Body bytes of ready messages the queue holds at most.
    public var maxBytes = 256 * 1024 * 1024
    public var overflow = Overflow.rejectPublish
    /// Unacknowledged deliveries per consumer when SUBSCRIBE does not say (`prefetch-count`); 0 = unlimited.
    public var defaultPrefetch = 100

    public init() {}

    /// The dead-letter queue of `destination` (nil for a dead-letter queue itself: its messages are not moved
    /// again, so a poison message cannot loop).
    public func deadLetterDestination(for destination: String) -> String? {
        destination.hasSuffix(self.deadLetterSuffix) ? nil : destination + self.deadLetterSuffix
    }
}
