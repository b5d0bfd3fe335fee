import NIOCore
import Testing
@testable import StarlingBroker

@Suite("MessageQueue")
struct MessageQueueTests {
    private func message(_ id: String, body: String = "x") -> BrokerMessage {
        BrokerMessage(destination: "/queue/q", messageID: id, sendHeaders: [:], body: ByteBuffer(string: body), allocator: .init())
    }

    private func queue(_ configure: (inout QueuePolicy) -> Void = { _ in }) -> MessageQueue {
        var policy = QueuePolicy()
        configure(&policy)
        return MessageQueue(destination: "/queue/q", policy: policy)
    }

    private func ids(_ dispatches: [QueueDispatch]) -> [String] { dispatches.map(\.message.message.messageID) }

    @Test("Messages wait for a consumer, then go round-robin to consumers with credit, each to exactly one")
    func roundRobinWithPrefetch() {
        var queue = self.queue()
        for index in 1...5 { _ = queue.enqueue(self.message("m\(index)"), expiresAt: nil) }
        #expect(queue.dispatch(now: 0).dispatches.isEmpty)
        queue.addConsumer(1, prefetch: 2)
        queue.addConsumer(2, prefetch: 1)
        let first = queue.dispatch(now: 0).dispatches
        #expect(first.map(\.consumer) == [1, 2, 1])
        #expect(self.ids(first) == ["m1", "m2", "m3"])
        #expect(queue.readyCount == 2 && queue.unackedCount == 3)
        queue.acknowledge([first[1].tag])  // consumer 2 has credit again
        let second = queue.dispatch(now: 0).dispatches
        #expect(second.map(\.consumer) == [2])
        #expect(self.ids(second) == ["m4"])
    }

    @Test("A NACK puts the message back at the front with its delivery count; at max-deliveries it is dead-lettered")
    func redeliveryAndDeliveryLimit() {
        var queue = self.queue { $0.maxDeliveries = 2 }
        _ = queue.enqueue(self.message("poison"), expiresAt: nil)
        _ = queue.enqueue(self.message("next"), expiresAt: nil)
        queue.addConsumer(1, prefetch: 1)
        let first = queue.dispatch(now: 0).dispatches
        #expect(first[0].message.deliveryCount == 1)
        #expect(queue.reject([first[0].tag], requeue: true).isEmpty)
        let again = queue.dispatch(now: 0).dispatches
        #expect(self.ids(again) == ["poison"])
        #expect(again[0].message.deliveryCount == 2)
        let dead = queue.reject([again[0].tag], requeue: true)
        #expect(dead.map(\.reason) == [.deliveryLimit])
        #expect(dead.first?.message.deliveryCount == 2)
        #expect(self.ids(queue.dispatch(now: 0).dispatches) == ["next"])
    }

    @Test("NACK with requeue false dead-letters at once; unknown and repeated tags are ignored")
    func rejectWithoutRequeue() {
        var queue = self.queue()
        _ = queue.enqueue(self.message("m"), expiresAt: nil)
        queue.addConsumer(1, prefetch: 0)
        let tag = queue.dispatch(now: 0).dispatches[0].tag
        #expect(queue.reject([tag], requeue: false).map(\.reason) == [.rejected])
        #expect(queue.reject([tag], requeue: false).isEmpty)
        queue.acknowledge([tag, 999])
        #expect(queue.unackedCount == 0 && queue.readyCount == 0)
    }

    @Test("A consumer leaving returns its unacknowledged messages in arrival order, for the others")
    func consumerLeaves() {
        var queue = self.queue()
        for index in 1...4 { _ = queue.enqueue(self.message("m\(index)"), expiresAt: nil) }
        queue.addConsumer(1, prefetch: 2)
        queue.addConsumer(2, prefetch: 2)
        let dispatched = queue.dispatch(now: 0).dispatches
        #expect(dispatched.map(\.consumer) == [1, 2, 1, 2])
        queue.acknowledge([dispatched[1].tag])  // consumer 2 acked m2 and keeps m4
        #expect(queue.removeConsumer(1).isEmpty)
        #expect(queue.readyCount == 2)
        queue.acknowledge([dispatched[3].tag])
        let redelivered = queue.dispatch(now: 0).dispatches
        #expect(self.ids(redelivered) == ["m1", "m3"])
        #expect(redelivered.allSatisfy { $0.consumer == 2 && $0.message.deliveryCount == 2 })
    }

    @Test("A delivery that never reached its consumer is returned without counting")
    func returnUndelivered() {
        var queue = self.queue()
        _ = queue.enqueue(self.message("m"), expiresAt: nil)
        queue.addConsumer(1, prefetch: 1)
        let tag = queue.dispatch(now: 0).dispatches[0].tag
        queue.returnUndelivered([tag])
        #expect(queue.dispatch(now: 0).dispatches.first?.message.deliveryCount == 1)
    }

    @Test("Expired messages are dead-lettered (or dropped) when met by dispatch or by the sweep")
    func expiry() {
        var queue = self.queue()
        _ = queue.enqueue(self.message("old"), expiresAt: 100)
        _ = queue.enqueue(self.message("fresh"), expiresAt: 10_000)
        _ = queue.enqueue(self.message("forever"), expiresAt: nil)
        #expect(queue.expire(now: 100).isEmpty, "not expired at its expiry instant")
        #expect(queue.expire(now: 101).map(\.reason) == [.expired])
        #expect(queue.readyCount == 2)
        queue.addConsumer(1, prefetch: 0)
        let result = queue.dispatch(now: 20_000)
        #expect(self.ids(result.dispatches) == ["forever"])
        #expect(result.deadLettered.map(\.message.message.messageID) == ["fresh"])

        var dropping = self.queue { $0.expiredAction = .drop }
        _ = dropping.enqueue(self.message("old"), expiresAt: 1)
        #expect(dropping.expire(now: 5).isEmpty)
        #expect(dropping.droppedExpired == 1 && dropping.readyCount == 0)
    }

    @Test("A full queue rejects publishes, or drops its head to the dead-letter queue")
    func maxLength() {
        var rejecting = self.queue { $0.maxLength = 2 }
        for index in 1...2 {
            guard case .accepted = rejecting.enqueue(self.message("m\(index)"), expiresAt: nil) else {
                Issue.record("expected accepted")
                return
            }
        }
        guard case .rejected(let reason) = rejecting.enqueue(self.message("m3"), expiresAt: nil) else {
            Issue.record("expected rejected")
            return
        }
        #expect(reason.contains("max-length 2"))

        var bytes = self.queue { $0.maxBytes = 10 }
        _ = bytes.enqueue(self.message("a", body: "123456"), expiresAt: nil)
        guard case .rejected(let byteReason) = bytes.enqueue(self.message("b", body: "123456"), expiresAt: nil) else {
            Issue.record("expected rejected by bytes")
            return
        }
        #expect(byteReason.contains("max-bytes 10"))

        var dropping = self.queue { $0.maxLength = 2; $0.overflow = .dropHead }
        for index in 1...3 { _ = dropping.enqueue(self.message("m\(index)"), expiresAt: nil) }
        guard case .accepted(let dead) = dropping.enqueue(self.message("m4"), expiresAt: nil) else {
            Issue.record("expected accepted")
            return
        }
        #expect(dead.map(\.message.message.messageID) == ["m2"])
        dropping.addConsumer(1, prefetch: 0)
        #expect(self.ids(dropping.dispatch(now: 0).dispatches) == ["m3", "m4"])
    }

    @Test("A dead-letter queue has no dead-letter queue of its own")
    func deadLetterName() {
        let policy = QueuePolicy()
        #expect(policy.deadLetterDestination(for: "/queue/orders") == "/queue/orders.dlq")
        #expect(policy.deadLetterDestination(for: "/queue/orders.dlq") == nil)
    }

    @Test("Queue names are checked")
    func names() {
        #expect(QueueName.problem("/queue/orders.eu") == nil)
        #expect(QueueName.problem("/queue/") != nil)
        #expect(QueueName.problem("/queue/a*") != nil)
        #expect(QueueName.problem("/queue/a\u{1}") != nil)
        #expect(QueueName.problem("/topic/a") != nil)
    }
}
