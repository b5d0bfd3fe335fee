import NIOCore
import StarlingSTOMP
import Testing
@testable import StarlingBroker

@Suite("Slow consumers and rate caps")
struct OutboundBacklogTests {
    private let sink = RecordingSink()

    private func subscription(_ id: String = "s") -> TopicSubscription {
        TopicSubscription(id: id, destination: "/topic/#", words: ["#"], ackMode: .auto, version: .v1_2, sink: self.sink)
    }

    private func message(_ destination: String, _ seq: Int, key: String? = nil, policy: DeliveryPolicy = .standard) -> BrokerMessage {
        var headers = STOMPHeaders()
        if let key { headers.add("x-key", key) }
        headers.add("x-seq", String(seq))
        return BrokerMessage(
            destination: destination, messageID: "m\(seq)", sendHeaders: headers, body: ByteBuffer(string: "v"),
            allocator: ByteBufferAllocator(), delivery: policy
        )
    }

    /// Everything the backlog gives out, as (subscription, x-seq, marks).
    private func drain(_ backlog: OutboundBacklog) -> [(String, String, String)] {
        var out: [(String, String, String)] = []
        while let item = backlog.next() {
            switch item {
            case .message(let message, let subscription, let marks):
                out.append((subscription.id, message.headers["x-seq"] ?? "", marks.map { String(buffer: $0) } ?? ""))
            case .frame(_, let body, _):
                out.append(("frame", String(buffer: body), ""))
            }
        }
        return out
    }

    @Test("conflate keeps the newest message per destination and x-key, in the order keys first became pending")
    func conflation() {
        let backlog = OutboundBacklog()
        let subscription = self.subscription()
        let conflate = DeliveryPolicy(slowConsumer: .conflate)
        for seq in 0..<100 {
            backlog.hold(self.message("/topic/p.a", seq, key: seq % 2 == 0 ? "x" : "y", policy: conflate), for: subscription, policy: conflate)
            backlog.hold(self.message("/topic/p.b", 1000 + seq, policy: conflate), for: subscription, policy: conflate)
        }
        #expect(backlog.conflatedCount == 197, "200 held, 3 keys")
        #expect(backlog.bytes < 4 * 200, "O(keys), not O(messages): \(backlog.bytes)")
        #expect(self.drain(backlog).map(\.1) == ["98", "1099", "99"])
        #expect(backlog.bytes == 0 && backlog.isEmpty)
    }

    @Test("drop-oldest keeps the newest N per subscription; the next message out says how many were dropped before it")
    func dropOldest() {
        let backlog = OutboundBacklog()
        let first = self.subscription("a")
        let second = self.subscription("b")
        let policy = DeliveryPolicy(slowConsumer: .dropOldest, maxPendingMessages: 3)
        for seq in 0..<10 { backlog.hold(self.message("/topic/n", seq, policy: policy), for: first, policy: policy) }
        backlog.hold(self.message("/topic/n", 100, policy: policy), for: second, policy: policy)
        #expect(backlog.droppedCount == 7)
        let out = self.drain(backlog)
        #expect(out.map(\.0) == ["a", "b", "a", "a"], "round-robin over subscriptions")
        #expect(out.map(\.1) == ["7", "100", "8", "9"])
        #expect(out.map(\.2) == ["x-dropped:7\n", "", "", ""])
    }

    @Test("disconnect-policy messages and frames stay in order, before lossy ones; an ended subscription gets nothing more")
    func orderedItems() {
        let backlog = OutboundBacklog()
        let kept = self.subscription("k")
        let ended = self.subscription("e")
        let conflate = DeliveryPolicy(slowConsumer: .conflate)
        backlog.hold(self.message("/topic/c", 1, policy: conflate), for: kept, policy: conflate)
        backlog.hold(self.message("/topic/d", 2), for: kept, policy: .standard)
        backlog.append(self.message("/topic/d", 3), to: ended, marks: ByteBuffer(string: "x-history:true\n"))
        backlog.append(head: nil, body: ByteBuffer(string: "RECEIPT"), isText: true)
        backlog.hold(self.message("/topic/c", 4, policy: conflate), for: ended, policy: conflate)
        #expect(backlog.bytes > 0)
        backlog.remove(ended)
        #expect(self.drain(backlog).map(\.1) == ["2", "RECEIPT", "1"])
        #expect(backlog.bytes == 0)
    }

    @Test("a rate limiter lets one message per interval and key through and holds only the newest of the rest")
    func rateLimiter() {
        let limiter = RateLimiter(subscriberRate: 10)  // 100 ms
        let policy = DeliveryPolicy(maxRate: 4)  // 250 ms: the lower rate wins
        let ms: UInt64 = 1_000_000
        let a1 = self.message("/topic/a", 1)
        #expect(limiter.interval(for: a1) == 100 * ms)
        #expect(limiter.interval(for: self.message("/topic/a", 0, policy: policy)) == 250 * ms)
        #expect(limiter.admit(a1, interval: 100 * ms, now: 1000 * ms))
        #expect(!limiter.admit(self.message("/topic/a", 2), interval: 100 * ms, now: 1010 * ms))
        #expect(!limiter.admit(self.message("/topic/a", 3), interval: 100 * ms, now: 1020 * ms))
        #expect(limiter.admit(self.message("/topic/b", 4), interval: 100 * ms, now: 1030 * ms), "keys are paced apart")
        #expect(limiter.nextDue == 1100 * ms)
        #expect(limiter.takeDue(now: 1099 * ms).isEmpty)
        #expect(limiter.takeDue(now: 1100 * ms).map(\.messageID) == ["m3"], "the newest held one")
        #expect(limiter.isIdle && limiter.conflatedCount == 1)
        #expect(!limiter.admit(self.message("/topic/a", 5), interval: 100 * ms, now: 1150 * ms), "paced from when m3 went out")
        #expect(limiter.admit(self.message("/topic/a", 6), interval: 100 * ms, now: 1300 * ms) == false, "m5 still held")
        #expect(limiter.takeDue(now: 1300 * ms).map(\.messageID) == ["m6"])
    }
}
