import NIOCore
import StarlingSTOMP

/// STOMP SUBSCRIBE `ack` modes.
public enum AckMode: String, Sendable, Hashable {
    case auto
    case client
    case clientIndividual = "client-individual"
}

/// A client connection the server must close when it shuts down. Lives on one event loop.
public protocol ServerConnection: AnyObject {
    /// The server is shutting down: tell the client and close.
    func serverIsShuttingDown()
}

/// Where deliveries go: the broker's view of one connection. Lives on one event loop and is touched only there.
public protocol MessageSink: ServerConnection {
    /// Set by the loop broker while the sink has unflushed deliveries.
    var needsFlush: Bool { get set }
    /// Writes one MESSAGE per message, in order, for `subscription` without flushing. The messages may be to
    /// several destinations (all matching the subscription's pattern).
    func deliver(_ messages: ArraySlice<BrokerMessage>, to subscription: TopicSubscription)
    /// Like `deliver(_:to:)`, with `marks` (encoded header lines, e.g. `x-history:true\n`) in every MESSAGE.
    func deliver(_ messages: ArraySlice<BrokerMessage>, to subscription: TopicSubscription, marks: ByteBuffer)
    /// Sends RECEIPT `receipt` with extra headers (a room SUBSCRIBE's receipt, once its history was written).
    func sendReceipt(_ receipt: String, headers: [(name: String, value: String)])
    /// Writes the MESSAGE of one queue delivery for `subscription` without flushing.
    func deliver(_ dispatch: QueueDispatch, to subscription: QueueSubscription)
    /// The outcome of an enqueue that asked for one (`QueueReply`): accepted, or refused with a reason.
    func enqueueFinished(token: UInt64, refusal: String?)
    /// Flushes what `deliver` wrote; called once per loop tick for each sink that received something.
    func flushDeliveries()
}

/// One SUBSCRIBE to a `/topic/` pattern, owned by a session and indexed by its loop's broker.
public final class TopicSubscription: SubscriptionTrieValue {
    public let id: String
    public let destination: String
    public let words: [Substring]
    public let ackMode: AckMode
    public let sink: MessageSink
    /// `MESSAGE\nsubscription:<id>\n`, the per-subscriber head of every MESSAGE, encoded once.
    public let head: ByteBuffer
    public var matchStamp: UInt64 = 0
    /// Set for a room or presence subscription: where it is in its stream.
    public var cursor: StreamCursor?
    /// Set when the subscription asked for `x-max-rate`, or some policy caps rates: paces its live messages.
    public var limiter: RateLimiter?
    /// The loop broker's bookkeeping while it delivers a batch (`LoopBroker.deliver`).
    var deliveryStamp: UInt64 = 0
    var deliverySlot = 0

    public init(id: String, destination: String, words: [Substring], ackMode: AckMode, version: STOMPVersion, sink: MessageSink) {
        self.id = id
        self.destination = destination
        self.words = words
        self.ackMode = ackMode
        self.sink = sink
        self.head = Self.messageHead(subscription: id, version: version)
    }

    /// `MESSAGE\nsubscription:<id>\n`: the start of every MESSAGE a subscription gets (topic or queue).
    static func messageHead(subscription id: String, version: STOMPVersion) -> ByteBuffer {
        var head = ByteBuffer()
        head.reserveCapacity(32 + id.utf8.count)
        head.writeString("MESSAGE\n")
        STOMPFrameEncoder.writeHeader("subscription", id, to: &head, version: version)
        return head
    }
}

/// Where a room or presence subscription is in its stream (docs/rooms.md). Live messages that arrive before the
/// snapshot (history, or the presence state) was written are held; after it only messages past it pass. So the two
/// neither overlap nor leave a gap, whichever of them reaches the subscriber's loop first.
public final class StreamCursor {
    /// Live messages that came before the snapshot; nil once it was written.
    var held: [BrokerMessage]? = []
    /// The offset of the last message written.
    var delivered: UInt64 = 0
    /// The next message written carries `x-recovered:false` (a resume that could not be honoured).
    var markNotRecovered = false
    /// False once unsubscribed: a snapshot arriving later is dropped.
    public var isActive = true
    /// Last-value mode (a SUBSCRIBE that may match many last-value topics): the offset written per destination,
    /// and how many loops' snapshots are still to come (`held` is written when none is).
    var perStream: [String: UInt64]?
    var awaitedSnapshots = 0

    public init() {}

    /// A cursor for a subscription that first gets the last values of every matching topic, from `loops` loops.
    public static func lastValues(loops: Int) -> StreamCursor {
        let cursor = StreamCursor()
        cursor.perStream = [:]
        cursor.awaitedSnapshots = loops
        return cursor
    }

    static let historyMark = ByteBuffer(string: "x-history:true\n")
    static let snapshotMark = ByteBuffer(string: "x-snapshot:true\n")
    static let notRecoveredMark = ByteBuffer(string: "x-recovered:false\n")
    static let historyNotRecoveredMark = ByteBuffer(string: "x-history:true\nx-recovered:false\n")
}
