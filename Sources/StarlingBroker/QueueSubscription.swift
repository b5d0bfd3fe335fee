#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import NIOCore
import StarlingSTOMP

/// One SUBSCRIBE to a `/queue/` destination: a consumer of that queue.
///
/// Created and used on the subscribing connection's event loop. The queue's owning loop keeps a reference only to
/// post deliveries back to `loopIndex`; it never reads the mutable state (hence `@unchecked Sendable`).
public final class QueueSubscription: @unchecked Sendable {
    public let id: String
    public let destination: String
    public let ackMode: AckMode
    /// Unacknowledged deliveries allowed at once (0 = unlimited).
    public let prefetch: Int
    /// Unique over the broker: the owning loop's queue knows the consumer by it.
    public let consumerID: UInt64
    /// The event loop (index) of the subscribing connection.
    public let loopIndex: Int
    /// `MESSAGE\nsubscription:<id>\n`, encoded once.
    public let head: ByteBuffer
    public let sink: MessageSink
    /// False once unsubscribed or disconnected: deliveries still on their way are returned to the queue.
    public var isActive = true

    public init(
        id: String, destination: String, ackMode: AckMode, prefetch: Int, consumerID: UInt64, loopIndex: Int,
        version: STOMPVersion, sink: MessageSink
    ) {
        self.id = id
        self.destination = destination
        self.ackMode = ackMode
        self.prefetch = prefetch
        self.consumerID = consumerID
        self.loopIndex = loopIndex
        self.sink = sink
        self.head = TopicSubscription.messageHead(subscription: id, version: version)
    }
}

/// Wall-clock milliseconds since 1970 (message expiry is wall-clock, as the `expires` header is).
public enum WallClock {
    public static func milliseconds() -> Int64 {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return Int64(spec.tv_sec) * 1000 + Int64(spec.tv_nsec) / 1_000_000
    }
}
