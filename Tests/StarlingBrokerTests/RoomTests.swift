import NIOCore
import NIOEmbedded
import StarlingSTOMP
import Testing
@testable import StarlingBroker

@Suite("Room")
struct RoomTests {
    private func message(_ room: Room, _ text: String) -> BrokerMessage {
        let offset = room.nextOffset()
        return BrokerMessage(
            destination: room.stream, messageID: text, sendHeaders: [:], body: ByteBuffer(string: text), allocator: .init(),
            offset: offset
        )
    }

    @Test("History keeps the newest messages up to the policy's size; resume works while nothing missed was dropped.")
    func historyAndResume() {
        var policy = HistoryPolicy()
        policy.history = 3
        let room = Room(stream: "/room/r", epoch: "e1", policy: policy)
        for index in 1...5 { room.keep(self.message(room, "m\(index)"), now: 0) }
        #expect(room.lastOffset == 5)
        #expect(room.last(10).map(\.messageID) == ["m3", "m4", "m5"])
        #expect(room.last(2).map(\.offset) == [4, 5])
        #expect(room.messages(after: 2, epoch: "e1")?.map(\.offset) == [3, 4, 5])
        #expect(room.messages(after: 5, epoch: "e1")?.isEmpty == true)
        #expect(room.messages(after: 1, epoch: "e1") == nil)  // m2 is gone
        #expect(room.messages(after: 4, epoch: "other") == nil)
        #expect(room.messages(after: 9, epoch: "e1") == nil)  // an offset the room never had
    }

    @Test("History is bounded in bytes too; the newest message is kept whatever its size.")
    func historyBytes() {
        var policy = HistoryPolicy()
        policy.history = 100
        let room = Room(stream: "/room/r", epoch: "e", policy: policy)
        let size = self.message(Room(stream: "/room/r", epoch: "e", policy: policy), "m00").sharedSize
        room.policy.historyMaxBytes = size * 3
        for index in 10...19 { room.keep(self.message(room, "m\(index)"), now: 0) }
        #expect(room.last(100).map(\.messageID) == ["m17", "m18", "m19"])
        #expect(room.oldestKeptOffset == 8)
        room.policy.historyMaxBytes = 1
        room.keep(self.message(room, "m20"), now: 0)
        #expect(room.last(100).map(\.messageID) == ["m20"])
        #expect(room.messages(after: 10, epoch: "e")?.map(\.messageID) == ["m20"])
        #expect(room.messages(after: 9, epoch: "e") == nil)
    }

    @Test("A presence update that would make the metadata too large changes nothing.")
    func metadataLimit() {
        let room = Room(stream: "/room/r", epoch: "e", policy: HistoryPolicy())
        let key = Room.ConnectionKey(session: "s", subscription: "1")
        _ = room.join(key, user: "u", meta: ["status": "online"])
        #expect(room.update(session: "s", changes: [("note", String(repeating: "x", count: 20))], maxMetaBytes: 24) == .tooLarge)
        #expect(room.members["u"]?.meta == ["status": "online"])
        #expect(room.update(session: "s", changes: [("note", "hi")], maxMetaBytes: 24) == .updated(["u"]))
        #expect(room.update(session: "x", changes: [], maxMetaBytes: 24) == .notMember)
    }

    @Test("Kept messages older than the TTL are dropped, and a resume needing them is not recoverable.")
    func historyTTL() {
        var policy = HistoryPolicy()
        policy.historyTTL = 1_000
        let room = Room(stream: "/room/r", epoch: "e", policy: policy)
        room.keep(self.message(room, "old"), now: 1_000)
        room.keep(self.message(room, "new"), now: 2_500)
        #expect(room.expire(now: 3_000) == 1)
        #expect(room.last(10).map(\.messageID) == ["new"])
        #expect(room.messages(after: 0, epoch: "e") == nil)
        #expect(room.messages(after: 1, epoch: "e")?.map(\.messageID) == ["new"])
        room.expire(now: 4_000)
        #expect(room.last(10).isEmpty)
    }

    @Test("A user with several connections is one member: joins on the first, leaves with the last.")
    func membership() {
        let room = Room(stream: "/room/r", epoch: "e", policy: HistoryPolicy())
        let phone = Room.ConnectionKey(session: "s1", subscription: "1")
        let laptop = Room.ConnectionKey(session: "s2", subscription: "1")
        #expect(room.join(phone, user: "alice", meta: ["device": "phone"]) == .join(user: "alice"))
        // Another connection of the same user: no join, but its metadata becomes the member's.
        #expect(room.join(laptop, user: "alice", meta: ["device": "laptop"]) == .update(user: "alice"))
        #expect(room.join(Room.ConnectionKey(session: "s2", subscription: "2"), user: "alice", meta: ["device": "laptop"]) == nil)
        #expect(room.leave(Room.ConnectionKey(session: "s2", subscription: "2")) == nil)
        #expect(room.members.count == 1)
        #expect(room.stateJSON(countOnly: false) == #"{"count":1,"members":{"alice":{"connections":2,"meta":{"device":"laptop"}}}}"#)
        #expect(room.update(session: "s1", changes: [("typing", "true"), ("device", "")]) == .updated(["alice"]))
        #expect(room.diffJSON(.update(user: "alice")) == #"{"count":1,"joins":{},"leaves":{},"updates":{"alice":{"connections":2,"meta":{"typing":"true"}}}}"#)
        #expect(room.update(session: "nobody", changes: [("x", "y")]) == .notMember)
        #expect(room.update(session: "s1", changes: [("typing", "true")]) == .updated([]), "no change, no diff")
        #expect(room.leave(phone) == nil)
        #expect(room.leave(laptop) == .leave(user: "alice"))
        #expect(room.leave(laptop) == nil)
        #expect(room.isEmpty)
        #expect(room.stateJSON(countOnly: true) == #"{"count":0}"#)
    }

    @Test("Presence JSON escapes names and values.")
    func jsonEscaping() {
        #expect(JSON.string("a\"b\\c\n\u{1}é") == #""a\"b\\c\n\u0001é""#)
        #expect(JSON.object(["b": "2", "a": "1"]) == #"{"a":"1","b":"2"}"#)
    }

    @Test("Room names: exact names only, no wildcards, slashes or control characters.")
    func names() {
        #expect(RoomName.problem("/room/lobby") == nil)
        #expect(RoomName.problem("/presence/team.dev") == nil)
        #expect(RoomName.problem("/room/") != nil)
        #expect(RoomName.problem("/room/a*b") != nil)
        #expect(RoomName.problem("/room/a/b") != nil)
        #expect(RoomName.problem("/room/a\u{7}") != nil)
        #expect(RoomName.problem("/room/" + String(repeating: "x", count: 201)) != nil)
    }
}

@Suite("Room streams across loops")
struct RoomStreamTests {
    private func runAll(_ loops: [EmbeddedEventLoop]) {
        for _ in 0..<8 { for loop in loops { loop.run() } }
    }

    private func join(
        _ loop: LoopBroker, _ sink: RecordingSink, id: String, room: String, history: Int? = nil,
        resume: (epoch: String, offset: UInt64)? = nil
    ) -> TopicSubscription {
        let subscription = TopicSubscription(
            id: id, destination: "/room/\(room)", words: RoomName.words(.room, room: Substring(room)), ackMode: .auto, version: .v1_2,
            sink: sink
        )
        subscription.cursor = StreamCursor()
        loop.subscribe(subscription)
        loop.joinRoom(RoomJoin(
            stream: "/room/\(room)", subscription: subscription, session: "s-\(id)", user: "u-\(id)", meta: [:], history: history,
            resumeFrom: resume, loopIndex: loop.index, receipt: "r-\(id)"
        ))
        return subscription
    }

    private func offsets(_ sink: RecordingSink, _ id: String) -> [Int] {
        sink.delivered.filter { $0.subscription == id }.compactMap { delivery in
            delivery.frame.split(separator: "\n").first { $0.hasPrefix("x-offset:") }.flatMap { Int($0.dropFirst(9)) }
        }
    }

    @Test("History then live with no gap and no duplicate, whichever reaches the subscriber's loop first.")
    func historyThenLive() {
        let loops = [EmbeddedEventLoop(), EmbeddedEventLoop()]
        let broker = Broker(eventLoops: loops)
        let owner = broker.loops[0].roomHost.owner(of: "/room/lobby")
        let other = 1 - owner
        for index in 1...5 {
            broker.loops[other].publishToStream("/room/lobby", headers: [:], body: ByteBuffer(string: "m\(index)"), user: "bob", messageID: "m\(index)")
        }
        self.runAll(loops)
        // Joins from the other loop, and more messages follow in the same hop: the owner publishes them after taking
        // the snapshot, and they travel to the subscriber's loop in another batch than the snapshot.
        let sink = RecordingSink()
        _ = self.join(broker.loops[other], sink, id: "a", room: "lobby", history: 3)
        for index in 6...8 {
            broker.loops[other].publishToStream("/room/lobby", headers: [:], body: ByteBuffer(string: "m\(index)"), user: "bob", messageID: "m\(index)")
        }
        self.runAll(loops)
        #expect(self.offsets(sink, "a") == [3, 4, 5, 6, 7, 8])
        let history = sink.delivered.filter { $0.frame.contains("x-history:true") }.map(\.messageID)
        #expect(history == ["m3", "m4", "m5"])
        #expect(sink.receipts.map(\.receipt) == ["r-a"])
        #expect(sink.receipts.first?.headers.first { $0.name == "x-offset" }?.value == "5")
    }

    @Test("A resume delivers exactly what was missed; one past the history is reported not recovered.")
    func resume() throws {
        let loops = [EmbeddedEventLoop(), EmbeddedEventLoop()]
        var policy = HistoryPolicy()
        policy.history = 4
        let broker = Broker(eventLoops: loops, historyPolicies: HistoryPolicies(roomDefault: policy))
        let first = RecordingSink()
        _ = self.join(broker.loops[0], first, id: "a", room: "r")
        self.runAll(loops)
        for index in 1...6 {
            broker.loops[1].publishToStream("/room/r", headers: [:], body: ByteBuffer(string: "m\(index)"), user: "bob", messageID: "m\(index)")
        }
        self.runAll(loops)
        let epoch = try #require(first.receipts.first?.headers.first { $0.name == "x-epoch" }?.value)
        #expect(self.offsets(first, "a") == [1, 2, 3, 4, 5, 6])

        let resumed = RecordingSink()
        _ = self.join(broker.loops[1], resumed, id: "b", room: "r", resume: (epoch, 3))
        self.runAll(loops)
        #expect(self.offsets(resumed, "b") == [4, 5, 6])
        #expect(resumed.receipts.first?.headers.contains { $0 == ("x-recovered", "true") } == true)

        let late = RecordingSink()
        _ = self.join(broker.loops[1], late, id: "c", room: "r", resume: (epoch, 1))
        self.runAll(loops)
        #expect(late.receipts.first?.headers.contains { $0 == ("x-recovered", "false") } == true)
        #expect(late.delivered.isEmpty)
        broker.loops[0].publishToStream("/room/r", headers: [:], body: ByteBuffer(string: "m7"), user: "bob", messageID: "m7")
        self.runAll(loops)
        // The first message after a failed resume says so.
        #expect(late.delivered.map(\.messageID) == ["m7"])
        #expect(late.delivered.first?.frame.contains("x-recovered:false") == true)
        #expect(resumed.delivered.last?.frame.contains("x-recovered") == false)
    }

    @Test("Live messages reaching a subscriber before its snapshot are held, then only those past it are written.")
    func heldUntilSnapshot() {
        let loop = EmbeddedEventLoop()
        let broker = Broker(eventLoops: [loop])
        let sink = RecordingSink()
        let subscription = TopicSubscription(
            id: "a", destination: "/room/r", words: RoomName.words(.room, room: "r"), ackMode: .auto, version: .v1_2, sink: sink
        )
        subscription.cursor = StreamCursor()
        broker.loops[0].subscribe(subscription)
        let messages = (1...4).map { offset in
            BrokerMessage(
                destination: "/room/r", messageID: "m\(offset)", sendHeaders: [:], body: ByteBuffer(string: "x"), allocator: .init(),
                serverHeaders: [("x-offset", "\(offset)")], offset: UInt64(offset)
            )
        }
        // Offsets 2...4 are live and arrive first; the snapshot covers up to 2 and brings 1...2 as history.
        for message in messages[1...] { broker.loops[0].publish(message, words: RoomName.words(.room, room: "r")) }
        loop.run()
        #expect(sink.delivered.isEmpty)
        broker.loops[0].deliverSnapshot(StreamSnapshot(
            subscription: subscription, messages: Array(messages[0...1]), head: 2, isHistory: true, notRecovered: false,
            receipt: "r1", receiptHeaders: []
        ))
        #expect(sink.delivered.map(\.messageID) == ["m1", "m2", "m3", "m4"])
        #expect(sink.delivered.map { $0.frame.contains("x-history:true") } == [true, true, false, false])
        #expect(sink.receipts.map(\.receipt) == ["r1"])
        // Once live, a repeat of something already written is dropped.
        broker.loops[0].publish(messages[3], words: RoomName.words(.room, room: "r"))
        loop.run()
        #expect(sink.delivered.count == 4)
    }

    @Test("A wildcard SUBSCRIBE gets the last value of each matching last-value topic, then live ones, none twice.")
    func lastValues() throws {
        let loops = [EmbeddedEventLoop(), EmbeddedEventLoop()]
        var policy = HistoryPolicy()
        policy.lastValue = true
        let rules = [(pattern: DestinationPattern("/topic/q.a")!, policy: policy), (pattern: DestinationPattern("/topic/q.b")!, policy: policy)]
        let broker = Broker(eventLoops: loops, historyPolicies: HistoryPolicies(rules: rules))
        #expect(broker.loops[0].hasLastValueTopics)
        func publish(_ destination: String, _ id: String, from loop: Int = 1) {
            if broker.loops[loop].topicHasHistory(destination) {
                broker.loops[loop].publishToStream(destination, headers: [:], body: ByteBuffer(string: id), user: nil, messageID: id)
            } else {
                broker.loops[loop].publish(
                    BrokerMessage(destination: destination, messageID: id, sendHeaders: [:], body: ByteBuffer(string: id), allocator: .init()),
                    words: try! TopicName.publishWords(destination)
                )
            }
        }
        for id in ["a1", "a2", "a3"] { publish("/topic/q.a", id) }
        publish("/topic/q.b", "b1")
        self.runAll(loops)
        let sink = RecordingSink()
        let subscription = TopicSubscription(
            id: "w", destination: "/topic/q.*", words: try TopicName.patternWords("/topic/q.*"), ackMode: .auto, version: .v1_2, sink: sink
        )
        broker.loops[0].subscribeWithLastValues(subscription, pattern: DestinationPattern("/topic/q.*")!, receipt: "r")
        // Published in the same ticks as the snapshots are taken: each arrives once, after its topic's snapshot.
        publish("/topic/q.a", "a4", from: 0)
        publish("/topic/q.c", "c1", from: 0)
        publish("/topic/q.b", "b2")
        self.runAll(loops)
        // Per last-value topic: the value current when its loop took the snapshot (marked), then every later one, in
        // order, none twice; whichever that was depends on the order the loops ran in.
        for (prefix, published) in [("a", ["a1", "a2", "a3", "a4"]), ("b", ["b1", "b2"])] {
            let got = sink.delivered.filter { $0.messageID.hasPrefix(prefix) }
            let first = try #require(got.first)
            #expect(first.frame.contains("x-snapshot:true"))
            #expect(got.dropFirst().allSatisfy { !$0.frame.contains("x-snapshot") })
            let start = try #require(published.firstIndex(of: first.messageID))
            #expect(got.map(\.messageID) == Array(published[start...]))
        }
        #expect(sink.delivered.filter { $0.messageID == "c1" }.count == 1, "a topic without a last value passes as it is")
        #expect(sink.receipts.map(\.receipt) == ["r"])
    }
}
