import NIOCore
import NIOEmbedded
import Testing
@testable import StarlingBroker

@Suite("Queues across event loops")
struct QueueHostTests {
    private func message(_ destination: String, _ id: String) -> BrokerMessage {
        BrokerMessage(destination: destination, messageID: id, sendHeaders: [:], body: ByteBuffer(string: id), allocator: .init())
    }

    private func runAll(_ loops: [EmbeddedEventLoop]) {
        for _ in 0..<6 { for loop in loops { loop.run() } }
    }

    @Test("A topic message the binding collected just before the durable subscription ended does not bring its queue back")
    func endedBindingDropsLateMessages() throws {
        let loop = EmbeddedEventLoop()
        let broker = Broker(eventLoops: [loop])
        let queue = "/queue/durable.c1.s1"
        broker.loops[0].bindDurable(queue: queue, pattern: "/topic/news", words: ["news"])
        self.runAll([loop])
        broker.loops[0].publish(self.message("/topic/news", "early"), words: ["news"])
        self.runAll([loop])
        #expect(broker.loops[0].queueStats(queue)?.ready == 1)
        // The binding takes the next message in the same tick as the end of the subscription, so its enqueue is
        // queued behind the unbind.
        broker.loops[0].publish(self.message("/topic/news", "late"), words: ["news"])
        broker.loops[0].unbindDurable(queue: queue)
        self.runAll([loop])
        #expect(broker.loops[0].queueStats(queue) == nil)
    }

    @Test("A queue lives on one loop; producers and consumers on other loops reach it, and acks free credit")
    func crossLoop() {
        let loops = [EmbeddedEventLoop(), EmbeddedEventLoop()]
        let broker = Broker(eventLoops: loops)
        let destination = "/queue/work"
        let owner = broker.loops[0].queueOwner(destination)
        let consumerLoop = broker.loops[1 - owner]
        let sink = RecordingSink()
        let subscription = consumerLoop.subscribeQueue(
            id: "s", destination: destination, ackMode: .clientIndividual, prefetch: 1, version: .v1_2, sink: sink
        )
        let producer = RecordingSink()
        for index in 1...3 {
            consumerLoop.enqueue(QueueEnqueue(
                destination: destination, message: self.message(destination, "m\(index)"), expiresAt: nil,
                reply: QueueReply(loopIndex: consumerLoop.index, sink: producer, token: UInt64(index), wantsSuccess: true)
            ))
        }
        self.runAll(loops)
        #expect(producer.enqueueOutcomes.map(\.token) == [1, 2, 3])
        #expect(producer.enqueueOutcomes.allSatisfy { $0.refusal == nil })
        #expect(sink.queueDeliveries.map(\.messageID) == ["m1"], "prefetch 1")
        #expect(broker.loops[owner].queueStats(destination)?.ready == 2)
        consumerLoop.acknowledge([sink.queueDeliveries[0].tag], queue: destination)
        self.runAll(loops)
        #expect(sink.queueDeliveries.map(\.messageID) == ["m1", "m2"])
        consumerLoop.unsubscribeQueue(subscription)
        self.runAll(loops)
        #expect(broker.loops[owner].queueStats(destination)?.ready == 2, "m2 went back, m3 waits")
        #expect(broker.loops[owner].queueStats(destination)?.consumers == 0)
    }

    @Test("A temporary queue exists only while its owner consumes; a SEND to it afterwards is refused")
    func temporaryQueue() {
        let loop = EmbeddedEventLoop()
        let broker = Broker(eventLoops: [loop])
        let destination = TempQueueName.queue(session: "s1", name: "replies")
        let producer = RecordingSink()
        let owner = RecordingSink()
        let subscription = broker.loops[0].subscribeQueue(
            id: "t", destination: destination, ackMode: .auto, prefetch: nil, version: .v1_2, sink: owner
        )
        broker.loops[0].enqueue(QueueEnqueue(
            destination: destination, message: self.message(destination, "r1"), expiresAt: nil,
            reply: QueueReply(loopIndex: 0, sink: producer, token: 1, wantsSuccess: true)
        ))
        self.runAll([loop])
        #expect(owner.queueDeliveries.map(\.messageID) == ["r1"])
        broker.loops[0].unsubscribeQueue(subscription)
        broker.loops[0].enqueue(QueueEnqueue(
            destination: destination, message: self.message(destination, "r2"), expiresAt: nil,
            reply: QueueReply(loopIndex: 0, sink: producer, token: 2, wantsSuccess: true)
        ))
        self.runAll([loop])
        #expect(producer.enqueueOutcomes.count == 2)
        #expect(producer.enqueueOutcomes[1].refusal?.contains("does not exist") == true)
        #expect(broker.loops[0].queueStats(destination) == nil)
    }

    @Test("Idempotency keys: first use only, per destination, forgotten after the window or on request")
    func idempotency() {
        let table = IdempotencyTable(windowMilliseconds: 100, capacity: 2)
        #expect(table.firstUse(key: "k", destination: "/queue/a", now: 0))
        #expect(!table.firstUse(key: "k", destination: "/queue/a", now: 50))
        #expect(table.firstUse(key: "k", destination: "/queue/b", now: 50))
        #expect(table.firstUse(key: "k", destination: "/queue/a", now: 101), "window passed")
        table.forget(key: "k", destination: "/queue/a")
        #expect(table.firstUse(key: "k", destination: "/queue/a", now: 102))
        #expect(table.count <= 2, "capacity bounds the table")
    }
}
