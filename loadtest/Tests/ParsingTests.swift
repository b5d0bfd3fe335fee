import NIOCore
import StarlingWebSocket
import Testing

@testable import StarlingLoadtestKit

@Suite("TargetURL")
struct TargetURLTests {
    @Test("A ws URL splits into host, port and path; the path defaults to /")
    func parse() throws {
        #expect(try TargetURL.parse("ws://127.0.0.1:8080/ws").get() == TargetURL(host: "127.0.0.1", port: 8080, path: "/ws"))
        #expect(try TargetURL.parse("ws://example.org").get() == TargetURL(host: "example.org", port: 80, path: "/"))
        #expect(try TargetURL.parse("ws://[::1]:15674/ws").get() == TargetURL(host: "::1", port: 15674, path: "/ws"))
    }

    @Test("wss, other schemes and bad ports are usage errors")
    func refuse() {
        for text in ["wss://h/ws", "http://h/", "ws://h:0/", "ws://h:99999/", "ws://:80/"] {
            guard case .failure(.usage) = TargetURL.parse(text) else {
                Issue.record("\(text) was accepted")
                continue
            }
        }
    }
}

@Suite("ProcFS")
struct ProcFSTests {
    @Test("CPU ticks are utime + stime, even when the command name holds spaces and parentheses")
    func stat() {
        let text = "1234 (my (odd) server) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 4 0 100 1000 200"
        #expect(ProcFS.cpuTicks(statText: text) == 325)
    }

    @Test("VmRSS is read in kB and returned in bytes")
    func status() {
        let text = "Name:\tstarling\nVmPeak:\t  300000 kB\nVmRSS:\t   41234 kB\nThreads:\t4\n"
        #expect(ProcFS.rssBytes(statusText: text) == 41234 * 1024)
    }

    @Test("CPU percent is CPU seconds over wall seconds")
    func cpuPercent() {
        let start = ProcessSample(cpuTicks: 100, rssBytes: 0, nanoseconds: 1_000_000_000)
        let end = ProcessSample(cpuTicks: 250, rssBytes: 0, nanoseconds: 3_000_000_000)
        #expect(ProcessSample.cpuPercent(from: start, to: end, ticksPerSecond: 100) == 75)
    }

    @Test("This process can be sampled")
    func sampleSelf() {
        let sample = ProcFS.sample(pid: nil)
        #expect((sample?.rssBytes ?? 0) > 0)
    }
}

@Suite("WebSocketClientHandshake")
struct WebSocketClientHandshakeTests {
    @Test("The request offers v12.stomp and, with deflate, permessage-deflate")
    func request() {
        let handshake = WebSocketClientHandshake(offerDeflate: true)
        let request = handshake.request(target: TargetURL(host: "127.0.0.1", port: 8080, path: "/ws"))
        #expect(request.hasPrefix("GET /ws HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"))
        #expect(request.contains("Sec-WebSocket-Protocol: v12.stomp\r\n"))
        #expect(request.contains("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"))
        #expect(request.hasSuffix("\r\n\r\n"))
        #expect(handshake.key.utf8.count == 24)
    }

    @Test("A 101 with the right accept value upgrades, and the bytes after it stay in the buffer")
    func upgrade() {
        var handshake = WebSocketClientHandshake(offerDeflate: true)
        let accept = WebSocketHandshake.acceptValue(forKey: handshake.key)
        let response = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + "Sec-WebSocket-Accept: \(accept)\r\nSec-WebSocket-Protocol: v12.stomp\r\n"
            + "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_max_window_bits=12\r\n\r\nFRAME"
        // Byte by byte, as a slow server might send it.
        var outcome = WebSocketClientHandshake.Outcome.needMoreData
        var rest = ByteBuffer()
        for byte in response.utf8 {
            var input = ByteBuffer(bytes: [byte])
            if case .needMoreData = outcome {
                outcome = handshake.feed(&input)
            }
            rest.writeBuffer(&input)
        }
        var expected = ClientDeflate.Parameters()
        expected.serverNoContextTakeover = true
        expected.clientMaxWindowBits = 12
        #expect(outcome == .upgraded(deflate: expected))
        #expect(rest.readString(length: rest.readableBytes) == "FRAME")
    }

    @Test("A status other than 101 and a wrong accept value are refusals that say why")
    func refusals() {
        var handshake = WebSocketClientHandshake(offerDeflate: false)
        var input = ByteBuffer(string: "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
        guard case .refused(let reason) = handshake.feed(&input) else {
            Issue.record("404 accepted")
            return
        }
        #expect(reason.contains("404"))
        var other = WebSocketClientHandshake(offerDeflate: false)
        var wrong = ByteBuffer(string: "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: nope\r\n\r\n")
        guard case .refused(let reason2) = other.feed(&wrong) else {
            Issue.record("wrong accept value accepted")
            return
        }
        #expect(reason2.contains("Sec-WebSocket-Accept"))
    }
}

@Suite("ClientDeflate")
struct ClientDeflateTests {
    @Test("What the client compresses, an inflater with the same parameters restores, message after message")
    func roundTrip() {
        let sender = ClientDeflate(parameters: .init())
        let receiver = ClientDeflate(parameters: .init())
        var compressed = ByteBuffer()
        var restored = ByteBuffer()
        for index in 0..<5 {
            let message = ByteBuffer(string: "SEND\ndestination:/topic/a\nx-lt-seq:\(index)\n\n" + String(repeating: "x", count: 100))
            do { let result = sender.compress(message, into: &compressed); #expect(result) }
            #expect(compressed.readableBytes < message.readableBytes)
            do { let result = receiver.decompress(compressed, into: &restored); #expect(result) }
            #expect(restored == message)
        }
    }

    @Test("An extension answer with an unknown parameter is refused")
    func parseParameters() {
        #expect(ClientDeflate.Parameters.parse("permessage-deflate; client_no_context_takeover")?.clientNoContextTakeover == true)
        #expect(ClientDeflate.Parameters.parse("permessage-deflate; bogus") == nil)
        #expect(ClientDeflate.Parameters.parse("x-webkit-deflate-frame") == nil)
    }
}

@Suite("Decimal writer")
struct DecimalWriterTests {
    @Test("Integers are written in decimal ASCII, zero and the largest included")
    func decimal() {
        for value in [0, 7, 10, 99, 1_000_000, UInt64.max] as [UInt64] {
            var buffer = ByteBuffer()
            buffer.writeDecimal(value)
            #expect(buffer.readString(length: buffer.readableBytes) == String(value))
        }
    }
}
