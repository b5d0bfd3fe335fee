import NIOCore
import StarlingBroker

/// A connection's side of its queue subscriptions: which deliveries wait for an ACK (by the `ack` id the client
/// sees), which `auto` deliveries are written and not yet settled, and which receipts wait for queues.
/// Event-loop-bound, part of `STOMPConnection`.
struct QueueState {
    /// Holds a connection's `QueueState` once it uses queues (see `STOMPConnection.queue`).
    final class Box {
        var state = QueueState()
    }

    struct Consumer {
        let subscription: QueueSubscription
        /// The consumer of a durable topic subscription's queue.
        var isDurable = false
        /// `client` mode only: unacknowledged ack ids in delivery order (an ACK is cumulative).
        var unacknowledged = CircularBuffer<String>()
    }

    struct Pending {
        let subscription: QueueSubscription
        let tag: UInt64
        /// Set for STOMP 1.0/1.1 sessions only (they acknowledge by `message-id`; see `ackIDsByMessageID`).
        let messageID: String?
    }

    /// By subscription id.
    var consumers: [String: Consumer] = [:]
    /// Deliveries waiting for ACK/NACK, by ack id.
    var pending: [String: Pending] = [:]
    /// STOMP 1.0/1.1 acknowledge by `message-id`: its ack id.
    var ackIDsByMessageID: [String: String] = [:]
    /// `auto` deliveries written this tick, by queue, settled once the socket accepted them.
    var autoSettles: [String: [UInt64]] = [:]
    /// A SEND/COMMIT's receipt waiting until every queue it wrote to accepted: token -> (receipt, queues left).
    var receiptWaits: [UInt64: (receipt: String, remaining: Int)] = [:]
    /// Idempotency keys of queue SENDs waiting for their queue's answer, by token (forgotten if refused).
    var idempotencyKeys: [UInt64: [(destination: String, key: String)]] = [:]
    private var nextAckID: UInt64 = 0
    private var nextToken: UInt64 = 0

    mutating func makeToken() -> UInt64 {
        self.nextToken += 1
        return self.nextToken
    }

    /// One more queue answer to wait for before the receipt of `token` (if a receipt waits on it).
    mutating func expectReply(_ token: UInt64) {
        self.receiptWaits[token]?.remaining += 1
    }

    /// Records a delivery that needs an ACK and returns its ack id. `messageID`: for a session that acknowledges by
    /// `message-id` (STOMP 1.0/1.1), nil for 1.2 (it acknowledges by ack id, so no second map per delivery).
    mutating func record(_ dispatch: QueueDispatch, subscription: QueueSubscription, messageID: String?) -> String {
        self.nextAckID += 1
        let ackID = "q\(self.nextAckID)"
        self.pending[ackID] = Pending(subscription: subscription, tag: dispatch.tag, messageID: messageID)
        if let messageID { self.ackIDsByMessageID[messageID] = ackID }
        return ackID
    }

    /// Drops a pending delivery (acknowledged, or its subscription is gone) and returns it.
    @discardableResult
    mutating func forget(_ ackID: String) -> Pending? {
        guard let pending = self.pending.removeValue(forKey: ackID) else { return nil }
        if let messageID = pending.messageID, self.ackIDsByMessageID[messageID] == ackID { self.ackIDsByMessageID[messageID] = nil }
        return pending
    }

    /// Drops every pending delivery of `subscription` (unsubscribed: the queue takes them back).
    mutating func forgetAll(of subscription: QueueSubscription) {
        for (ackID, pending) in self.pending where pending.subscription === subscription { self.forget(ackID) }
    }
}
