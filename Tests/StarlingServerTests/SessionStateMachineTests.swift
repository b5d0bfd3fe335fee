import NIOCore
import StarlingBroker
import StarlingSTOMP
import Testing
@testable import StarlingServer

@Suite("SessionStateMachine")
struct SessionStateMachineTests {
    private func machine(heartbeat: SessionStateMachine.Heartbeat = .init(send: 1000, receive: 2000)) -> SessionStateMachine {
        var configuration = SessionStateMachine.Configuration()
        configuration.heartbeat = heartbeat
        configuration.maxSubscriptions = 2
        return SessionStateMachine(configuration: configuration, sessionID: "s1")
    }

    private func frame(_ command: STOMPCommand, _ headers: [(String, String)] = []) -> STOMPFrame {
        STOMPFrame(command, headers: STOMPHeaders(headers.map { (name: $0.0, value: $0.1) }))
    }

    private func connected(_ version: String = "1.2") -> SessionStateMachine {
        var machine = self.machine()
        _ = machine.receive(self.frame(.connect, [("accept-version", version)]))
        return machine
    }

    @Test("CONNECT picks the highest common version and answers CONNECTED with version, heart-beat, server and session.")
    func connect() {
        var machine = self.machine()
        let action = machine.receive(self.frame(.connect, [
            ("accept-version", "1.0,1.1,1.2"), ("heart-beat", "500,3000"), ("login", "alice"), ("client-id", "phone"),
        ]))
        guard case .connected(let frame, let version, let heartbeat, let login, let clientID, _) = action else {
            Issue.record("expected CONNECTED, got \(action)")
            return
        }
        #expect(version == .v1_2)
        #expect(frame.headers["version"] == "1.2")
        #expect(frame.headers["heart-beat"] == "1000,2000")
        #expect(frame.headers["session"] == "s1")
        #expect(frame.headers["server"]?.hasPrefix("Starling/") == true)
        // Server sends at max(server send, client wants) and expects at max(client send, server wants).
        #expect(heartbeat == .init(send: 3000, receive: 2000))
        #expect(login == "alice" && clientID == "phone")
    }

    @Test("A CONNECT without accept-version is STOMP 1.0, and a STOMP frame works like CONNECT.")
    func versions() {
        var machine = self.machine()
        guard case .connected(_, let version, let heartbeat, _, _, _) = machine.receive(self.frame(.connect)) else {
            Issue.record("expected CONNECTED")
            return
        }
        #expect(version == .v1_0)
        #expect(heartbeat == .init(send: 0, receive: 0))
        var other = self.machine()
        guard case .connected(_, let v11, _, _, _, _) = other.receive(self.frame(.stomp, [("accept-version", "1.1")])) else {
            Issue.record("expected CONNECTED")
            return
        }
        #expect(v11 == .v1_1)
    }

    @Test("No common version gets an ERROR listing the supported versions.")
    func noCommonVersion() {
        var machine = self.machine()
        let action = machine.receive(self.frame(.connect, [("accept-version", "2.0"), ("receipt", "r")]))
        #expect(action == .unsupportedVersion(supported: "1.0,1.1,1.2", receiptID: "r"))
    }

    @Test("A malformed heart-beat header is a protocol error.")
    func badHeartbeat() {
        var machine = self.machine()
        let action = machine.receive(self.frame(.connect, [("accept-version", "1.2"), ("heart-beat", "x,1")]))
        guard case .error = action else {
            Issue.record("expected ERROR, got \(action)")
            return
        }
    }

    @Test("Any frame before CONNECT is an ERROR, and so is a second CONNECT.")
    func ordering() {
        var machine = self.machine()
        guard case .error = machine.receive(self.frame(.send, [("destination", "/topic/a")])) else {
            Issue.record("expected ERROR")
            return
        }
        var twice = self.connected()
        guard case .error = twice.receive(self.frame(.connect, [("accept-version", "1.2")])) else {
            Issue.record("expected ERROR")
            return
        }
    }

    @Test("SUBSCRIBE needs destination and id (1.2), rejects duplicate ids, bad ack modes and too many subscriptions.")
    func subscribe() {
        var machine = self.connected()
        #expect(machine.receive(self.frame(.subscribe, [("destination", "/topic/a"), ("id", "1"), ("receipt", "r")]))
            == .subscribe(id: "1", destination: "/topic/a", ackMode: .auto, prefetch: nil, receipt: "r"))
        #expect(machine.receive(self.frame(.subscribe, [("destination", "/topic/b.*"), ("id", "2"), ("ack", "client-individual")]))
            == .subscribe(id: "2", destination: "/topic/b.*", ackMode: .clientIndividual, prefetch: nil, receipt: nil))
        guard case .error(let message, _, _) = machine.receive(self.frame(.subscribe, [("destination", "/topic/c"), ("id", "3")])) else {
            Issue.record("expected ERROR for the third subscription")
            return
        }
        #expect(message.contains("limit 2"))

        for headers in [[("id", "9")], [("destination", "/topic/a")], [("destination", "/topic/a"), ("id", "1")],
                        [("destination", "/topic/a"), ("id", "9"), ("ack", "sometimes")], [("destination", "/nope/a"), ("id", "9")]] {
            var fresh = self.connected()
            _ = fresh.receive(self.frame(.subscribe, [("destination", "/topic/a"), ("id", "1")]))
            guard case .error = fresh.receive(self.frame(.subscribe, headers)) else {
                Issue.record("expected ERROR for \(headers)")
                continue
            }
        }
    }

    @Test("STOMP 1.0 subscriptions may omit id; the destination names them.")
    func subscribe10() {
        var machine = self.connected("1.0")
        #expect(machine.receive(self.frame(.subscribe, [("destination", "/topic/a")]))
            == .subscribe(id: "/topic/a", destination: "/topic/a", ackMode: .auto, prefetch: nil, receipt: nil))
        #expect(machine.receive(self.frame(.unsubscribe, [("destination", "/topic/a")])) == .unsubscribe(id: "/topic/a", receipt: nil))
    }

    @Test("UNSUBSCRIBE of an unknown id is an ERROR.")
    func unsubscribeUnknown() {
        var machine = self.connected()
        guard case .error(let message, let receiptID, _) = machine.receive(self.frame(.unsubscribe, [("id", "x"), ("receipt", "7")])) else {
            Issue.record("expected ERROR")
            return
        }
        #expect(message.contains("'x'"))
        #expect(receiptID == "7")
    }

    @Test("SEND to a queue checks its expiry headers; the earliest expiry wins.")
    func queueExpiry() {
        for (name, value) in [("ttl", "-1"), ("expires", "soon"), ("expiration", "1.5")] {
            var machine = self.connected()
            guard case .error(let message, _, _) = machine.receive(self.frame(.send, [("destination", "/queue/q"), (name, value)])) else {
                Issue.record("expected ERROR for \(name):\(value)")
                continue
            }
            #expect(message.contains(name))
        }
        var machine = self.connected()
        guard case .execute(let work, _) = machine.receive(self.frame(.send, [("destination", "/queue/q"), ("ttl", "500")])),
            case .publish(let publish) = work.first
        else {
            Issue.record("expected the SEND to be accepted")
            return
        }
        #expect(SessionStateMachine.expiry(of: publish.headers, now: 1_000) == 1_500)
        var both = STOMPHeaders()
        both.add("expires", "1200")
        both.add("ttl", "500")
        #expect(SessionStateMachine.expiry(of: both, now: 1_000) == 1_200)
        #expect(SessionStateMachine.expiry(of: ["expires": "0"], now: 1_000) == nil)
        #expect(SessionStateMachine.expiry(of: [:], now: 1_000) == nil)
    }

    @Test("SUBSCRIBE reads x-max-rate on topics (a decimal rate up to 1000, 0 = unlimited) and rejects anything else.")
    func maxRate() {
        var machine = self.connected()
        #expect(machine.receive(self.frame(.subscribe, [("destination", "/topic/p.*"), ("id", "1"), ("x-max-rate", "2.5")]))
            == .subscribe(id: "1", destination: "/topic/p.*", ackMode: .auto, prefetch: nil, maxRate: 2.5, receipt: nil))
        #expect(machine.receive(self.frame(.subscribe, [("destination", "/topic/p.a"), ("id", "2"), ("x-max-rate", "0")]))
            == .subscribe(id: "2", destination: "/topic/p.a", ackMode: .auto, prefetch: nil, maxRate: 0, receipt: nil))
        for (destination, value) in [
            ("/topic/a", "abc"), ("/topic/a", "-1"), ("/topic/a", "1e9"), ("/topic/a", "5000"), ("/topic/a", ""), ("/topic/a", "0x10"),
            ("/topic/a", "inf"), ("/topic/a", "1.2.3"), ("/topic/a", "0.0001"), ("/topic/a", "0.00000000001"), ("/queue/a", "5"), ("/room/a", "5"),
        ] {
            var bad = self.connected()
            guard case .error(let message, _, _) = bad.receive(self.frame(.subscribe, [("destination", destination), ("id", "1"), ("x-max-rate", value)]))
            else {
                Issue.record("expected ERROR for x-max-rate '\(value)' on \(destination)")
                continue
            }
            #expect(message.contains("x-max-rate"), "\(message)")
        }
    }

    @Test("SUBSCRIBE reads prefetch-count (or activemq.prefetchSize) and rejects bad values.")
    func prefetch() {
        var machine = self.connected()
        #expect(machine.receive(self.frame(.subscribe, [("destination", "/queue/q"), ("id", "1"), ("prefetch-count", "7")]))
            == .subscribe(id: "1", destination: "/queue/q", ackMode: .auto, prefetch: 7, receipt: nil))
        #expect(machine.receive(self.frame(.subscribe, [("destination", "/queue/q"), ("id", "2"), ("activemq.prefetchSize", "0")]))
            == .subscribe(id: "2", destination: "/queue/q", ackMode: .auto, prefetch: 0, receipt: nil))
        var bad = self.connected()
        guard case .error(let message, _, _) = bad.receive(self.frame(.subscribe, [("destination", "/queue/q"), ("id", "1"), ("prefetch-count", "-3")])) else {
            Issue.record("expected ERROR")
            return
        }
        #expect(message.contains("prefetch-count"))
    }

    @Test("SEND publishes to topics and refuses wildcards, bad room names and unknown destinations.")
    func send() {
        var machine = self.connected()
        let action = machine.receive(STOMPFrame(.send, headers: ["destination": "/topic/a.b"], body: ByteBuffer(string: "x")))
        guard case .execute(let work, nil) = action, case .publish(let publish) = work.first, work.count == 1 else {
            Issue.record("expected publish, got \(action)")
            return
        }
        #expect(publish.destination == "/topic/a.b")
        for destination in ["/topic/a.*", "/queue/", "/queue/a*", "/temp-queue/", "/user/alice", "/room/", "/room/a*b", "/presence/a/b", "/elsewhere", "/topic/", "/topic/a\u{1}"] {
            var fresh = self.connected()
            guard case .error(let message, _, _) = fresh.receive(self.frame(.send, [("destination", destination)])) else {
                Issue.record("expected ERROR for \(destination)")
                continue
            }
            #expect(!message.isEmpty)
        }
    }

    @Test("Transactions hold SENDs until COMMIT, drop them on ABORT, and unknown transactions are errors.")
    func transactions() {
        var machine = self.connected()
        #expect(machine.receive(self.frame(.begin, [("transaction", "t"), ("receipt", "b")])) == .receipt("b"))
        #expect(machine.receive(self.frame(.send, [("destination", "/topic/a"), ("transaction", "t")])) == .receipt(nil))
        #expect(machine.receive(self.frame(.send, [("destination", "/topic/b"), ("transaction", "t")])) == .receipt(nil))
        #expect(machine.receive(self.frame(.nack, [("id", "q1"), ("transaction", "t"), ("requeue", "false")])) == .receipt(nil))
        guard case .execute(let work, let receipt) = machine.receive(self.frame(.commit, [("transaction", "t"), ("receipt", "c")])) else {
            Issue.record("expected the transaction's work on COMMIT")
            return
        }
        #expect(work.count == 3)
        if case .publish(let first) = work[0], case .publish(let second) = work[1] {
            #expect([first.destination, second.destination] == ["/topic/a", "/topic/b"])
        } else {
            Issue.record("expected two publishes first")
        }
        #expect(work[2] == .acknowledge(.init(id: "q1", subscription: nil, positive: false, requeue: false)))
        #expect(receipt == "c")
        #expect(machine.receive(self.frame(.begin, [("transaction", "u")])) == .receipt(nil))
        #expect(machine.receive(self.frame(.abort, [("transaction", "u")])) == .receipt(nil))
        guard case .error = machine.receive(self.frame(.commit, [("transaction", "u")])) else {
            Issue.record("expected ERROR committing an aborted transaction")
            return
        }
    }

    @Test("ACK needs id in 1.2 and message-id plus subscription in 1.1.")
    func ack() {
        var v12 = self.connected()
        #expect(v12.receive(self.frame(.ack, [("id", "m1"), ("receipt", "a")]))
            == .execute([.acknowledge(.init(id: "m1", subscription: nil, positive: true))], receipt: "a"))
        guard case .error = v12.receive(self.frame(.nack, [("message-id", "m1")])) else {
            Issue.record("expected ERROR for a 1.2 NACK without id")
            return
        }
        var v11 = self.connected("1.1")
        #expect(v11.receive(self.frame(.ack, [("message-id", "m1"), ("subscription", "s")]))
            == .execute([.acknowledge(.init(id: "m1", subscription: "s", positive: true))], receipt: nil))
        var badRequeue = self.connected()
        guard case .error = badRequeue.receive(self.frame(.nack, [("id", "m1"), ("requeue", "maybe")])) else {
            Issue.record("expected ERROR for requeue:maybe")
            return
        }
    }

    @Test("DISCONNECT answers its receipt and closes; server frames from a client are errors.")
    func disconnect() {
        var machine = self.connected()
        #expect(machine.receive(self.frame(.disconnect, [("receipt", "bye")])) == .disconnect(receipt: "bye"))
        var other = self.connected()
        guard case .error = other.receive(self.frame(.message, [("destination", "/topic/a")])) else {
            Issue.record("expected ERROR")
            return
        }
    }
}

@Suite("SessionStateMachine rooms")
struct SessionStateMachineRoomTests {
    @Test("A room SUBSCRIBE carries its options; bad x-history, x-resume-from and x-presence-mode are errors.")
    func roomOptions() throws {
        let options = try SessionStateMachine.roomOptions(
            ["x-presence-status": "away", "x-presence-status": "ignored", "x-history": "20", "x-resume-from": "ab12:7", "x-presence-": "x"],
            presence: false
        ).get()
        #expect(options.meta == ["status": "away"])
        #expect(options.history == 20)
        #expect(options.resumeEpoch == "ab12" && options.resumeOffset == 7)
        #expect(try SessionStateMachine.roomOptions(["x-presence-mode": "count"], presence: true).get().countOnly)
        for headers: STOMPHeaders in [["x-history": "-1"], ["x-history": "many"], ["x-resume-from": "7"], ["x-resume-from": ":7"], ["x-resume-from": "e:x"]] {
            #expect(throws: SessionStateMachine.SettingProblem.self) { try SessionStateMachine.roomOptions(headers, presence: false).get() }
        }
        #expect(throws: SessionStateMachine.SettingProblem.self) {
            try SessionStateMachine.roomOptions(["x-presence-mode": "everything"], presence: true).get()
        }
    }
}
