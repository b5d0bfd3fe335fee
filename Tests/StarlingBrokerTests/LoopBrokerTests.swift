import NIOCore
import NIOEmbedded
import StarlingSTOMP
import Testing
@testable import StarlingBroker

/// A sink that records what it was given.
final class RecordingSink: MessageSink {
    var needsFlush = false
    var delivered: [(subscription: String, messageID: String, frame: String)] = []
    var flushes = 0
    var shutdowns = 0
    var deliverCalls = 0

    func deliver(_ messages: ArraySlice<BrokerMessage>, to subscription: TopicSubscription) {
        self.deliverCalls += 1
        for message in messages {
            var frame = subscription.head
            var shared = message.shared
            frame.writeBuffer(&shared)
            self.delivered.append((subscription.id, message.messageID, String(buffer: frame)))
        }
    }

    func deliver(_ messages: ArraySlice<BrokerMessage>, to subscription: TopicSubscription, marks: ByteBuffer) {
        self.deliverCalls += 1
        for message in messages {
            var frame = subscription.head
            frame.writeImmutableBuffer(marks)
            var shared = message.shared
            frame.writeBuffer(&shared)
            self.delivered.append((subscription.id, message.messageID, String(buffer: frame)))
        }
    }

    var receipts: [(receipt: String, headers: [(name: String, value: String)])] = []

    func sendReceipt(_ receipt: String, headers: [(name: String, value: String)]) { self.receipts.append((receipt, headers)) }

    var queueDeliveries: [(subscription: String, tag: UInt64, messageID: String, deliveryCount: Int)] = []
    var enqueueOutcomes: [(token: UInt64, refusal: String?)] = []

    func deliver(_ dispatch: QueueDispatch, to subscription: QueueSubscription) {
        self.queueDeliveries.append((subscription.id, dispatch.tag, dispatch.message.message.messageID, dispatch.message.deliveryCount))
    }

    func enqueueFinished(token: UInt64, refusal: String?) { self.enqueueOutcomes.append((token, refusal)) }

    func flushDeliveries() { self.flushes += 1 }
    func serverIsShuttingDown() { self.shutdowns += 1 }
}

@Suite("LoopBroker")
struct LoopBrokerTests {
    private func message(_ destination: String, _ id: String, body: String = "hi") -> BrokerMessage {
        BrokerMessage(
            destination: destination, messageID: id, sendHeaders: ["destination": destination, "x-custom": "v", "receipt": "r1"],
            body: ByteBuffer(string: body), allocator: .init()
        )
    }

    private func subscribe(_ loop: LoopBroker, _ sink: RecordingSink, id: String, _ destination: String) -> TopicSubscription {
        let subscription = TopicSubscription(
            id: id, destination: destination, words: try! TopicName.patternWords(destination), ackMode: .auto, version: .v1_2, sink: sink
        )
        loop.subscribe(subscription)
        return subscription
    }

    @Test("A publish reaches matching subscribers on every loop, in order, with one flush per sink per batch.")
    func crossLoop() throws {
        let loops = [EmbeddedEventLoop(), EmbeddedEventLoop()]
        let broker = Broker(eventLoops: loops)
        let near = RecordingSink(), far = RecordingSink(), other = RecordingSink()
        _ = self.subscribe(broker.loops[0], near, id: "n", "/topic/a.b")
        _ = self.subscribe(broker.loops[1], far, id: "f", "/topic/a.*")
        _ = self.subscribe(broker.loops[1], other, id: "o", "/topic/z")
        for index in 1...3 {
            let destination = "/topic/a.b"
            broker.loops[0].publish(self.message(destination, "m\(index)"), words: try TopicName.publishWords(destination))
        }
        #expect(near.delivered.isEmpty)  // queued until the end of the loop tick
        loops[0].run()
        loops[1].run()
        #expect(near.delivered.map(\.messageID) == ["m1", "m2", "m3"])
        #expect(far.delivered.map(\.messageID) == ["m1", "m2", "m3"])
        #expect(other.delivered.isEmpty)
        #expect(near.flushes == 1)
        #expect(far.flushes == 1)
        #expect(far.delivered[0].frame == "MESSAGE\nsubscription:f\ndestination:/topic/a.b\nmessage-id:m1\nx-custom:v\ncontent-length:2\n\nhi\0")
    }

    @Test("A batch mixing destinations reaches each subscriber in publish order (delivery is subscriber-major per batch).")
    func interleavedDestinationsKeepOrder() throws {
        let loop = EmbeddedEventLoop()
        let broker = Broker(eventLoops: [loop])
        let wildcard = RecordingSink(), onlyB = RecordingSink(), onlyC = RecordingSink()
        _ = self.subscribe(broker.loops[0], wildcard, id: "w", "/topic/a.*")
        _ = self.subscribe(broker.loops[0], onlyB, id: "b", "/topic/a.b")
        _ = self.subscribe(broker.loops[0], onlyC, id: "c", "/topic/a.c")
        for (index, destination) in ["/topic/a.b", "/topic/a.c", "/topic/a.c", "/topic/a.b", "/topic/a.b"].enumerated() {
            broker.loops[0].publish(self.message(destination, "m\(index)"), words: try TopicName.publishWords(destination))
        }
        loop.run()
        #expect(wildcard.delivered.map(\.messageID) == ["m0", "m1", "m2", "m3", "m4"])
        #expect(onlyB.delivered.map(\.messageID) == ["m0", "m3", "m4"])
        #expect(onlyC.delivered.map(\.messageID) == ["m1", "m2"])
        #expect(wildcard.flushes == 1 && onlyB.flushes == 1 && onlyC.flushes == 1)
        // Each subscriber got its messages of the batch in one call (visited once per batch).
        #expect(wildcard.deliverCalls == 1 && onlyB.deliverCalls == 1 && onlyC.deliverCalls == 1)

        // The next batch starts from fresh bookkeeping.
        for (index, destination) in ["/topic/a.c", "/topic/a.b", "/topic/a.c"].enumerated() {
            broker.loops[0].publish(self.message(destination, "n\(index)"), words: try TopicName.publishWords(destination))
        }
        loop.run()
        #expect(wildcard.delivered.map(\.messageID).suffix(3) == ["n0", "n1", "n2"])
        #expect(onlyB.delivered.map(\.messageID) == ["m0", "m3", "m4", "n1"])
        #expect(onlyC.delivered.map(\.messageID) == ["m1", "m2", "n0", "n2"])
        #expect(wildcard.deliverCalls == 2 && onlyB.deliverCalls == 2 && onlyC.deliverCalls == 2)
    }

    @Test("Unsubscribing stops deliveries and withdraws the loop's interest.")
    func unsubscribe() throws {
        let loops = [EmbeddedEventLoop(), EmbeddedEventLoop()]
        let broker = Broker(eventLoops: loops)
        let sink = RecordingSink()
        let subscription = self.subscribe(broker.loops[1], sink, id: "s", "/topic/#")
        broker.loops[0].publish(self.message("/topic/x", "1"), words: ["x"])
        loops[0].run(); loops[1].run()
        broker.loops[1].unsubscribe(subscription)
        #expect(broker.interest.patternCount == 0)
        broker.loops[0].publish(self.message("/topic/x", "2"), words: ["x"])
        loops[0].run(); loops[1].run()
        #expect(sink.delivered.map(\.messageID) == ["1"])
    }

    @Test("MESSAGE frames pass user headers on and drop SEND-only ones; the first of repeated headers wins.")
    func messageHeaders() {
        var headers: STOMPHeaders = [:]
        headers.add("destination", "/topic/a")
        headers.add("receipt", "77")
        headers.add("transaction", "t")
        headers.add("content-type", "text/plain")
        headers.add("k", "first")
        headers.add("k", "second")
        let message = BrokerMessage(destination: "/topic/a", messageID: "id-1", sendHeaders: headers, body: ByteBuffer(), allocator: .init())
        #expect(String(buffer: message.shared) == "destination:/topic/a\nmessage-id:id-1\ncontent-type:text/plain\nk:first\n\n\0")
    }

    @Test("Header values are escaped per subscriber version: 1.2 escapes, 1.0 does not.")
    func versionEscaping() {
        let message = BrokerMessage(destination: "/topic/a", messageID: "1", sendHeaders: ["k": "a:b"], body: ByteBuffer(), allocator: .init())
        #expect(String(buffer: message.shared(for: .v1_2)).contains("k:a\\cb\n"))
        #expect(String(buffer: message.shared(for: .v1_0)).contains("k:a:b\n"))
    }

    @Test("UTF-8 check accepts text and rejects broken sequences.")
    func utf8() {
        #expect(UTF8Check.isValid(ByteBuffer(string: "hello, wörld ✓ and more ascii text")))
        #expect(!UTF8Check.isValid(ByteBuffer(bytes: [0x61, 0xC3, 0x28])))
        #expect(!UTF8Check.isValid(ByteBuffer(bytes: Array(repeating: 0x61, count: 20) + [0xFF])))
    }
}
