import NIOCore
import StarlingSTOMP
import Testing

@testable import StarlingLoadtestKit

/// The byte-level MESSAGE scanner must give exactly what the full STOMP parser gives, for every way the bytes
/// can be cut into WebSocket messages.
@Suite("FrameReceiver")
struct FrameReceiverTests {
    static let runID = Array("k3x9q".utf8)
    static let limits = STOMPParserLimits(
        maxCommandLength: 32, maxHeaderCount: 256, maxHeaderLineLength: 65_536, maxBodySize: 16 << 20)

    enum Event: Equatable {
        case message(ReceivedMessage)
        case frame(STOMPFrame)
        case failure(String)
    }

    /// Feeds `chunks` in order; the events, ending with the error if one was thrown.
    static func receive(_ chunks: [[UInt8]], fast: Bool) -> (events: [Event], receiver: FrameReceiver) {
        var receiver = FrameReceiver(limits: Self.limits, runID: Self.runID, fastPathEnabled: fast)
        var events: [Event] = []
        do {
            for chunk in chunks {
                var input = ByteBuffer(bytes: chunk)
                while let received = try receiver.next(&input) {
                    switch received {
                    case .message(let message): events.append(.message(message))
                    case .frame(let frame): events.append(.frame(frame))
                    }
                }
                #expect(input.readableBytes == 0)
            }
        } catch {
            events.append(.failure("\(error)"))
        }
        return (events, receiver)
    }

    /// What the full parser alone makes of `stream`, with every MESSAGE read through `ReceivedMessage(frame:)`.
    static func reference(_ stream: [UInt8]) -> [Event] {
        var parser = STOMPFrameParser(limits: Self.limits)
        var input = ByteBuffer(bytes: stream)
        var events: [Event] = []
        do {
            while let frame = try parser.next(&input) {
                events.append(frame.command == .message
                    ? .message(ReceivedMessage(frame: frame, runID: Self.runID)) : .frame(frame))
            }
        } catch {
            events.append(.failure("\(error)"))
        }
        return events
    }

    /// Every split of `stream` into two inputs, and into three around every pair of nearby positions, and byte
    /// by byte: the receiver (fast path on) agrees with the full parser.
    static func expectAgreementAtEverySplit(_ stream: [UInt8], sourceLocation: SourceLocation = #_sourceLocation) {
        let expected = Self.reference(stream)
        let whole = Self.receive([stream], fast: true).events
        #expect(whole == expected, "whole", sourceLocation: sourceLocation)
        #expect(Self.receive([stream], fast: false).events == expected, "fast path off", sourceLocation: sourceLocation)
        for cut in 0...stream.count {
            let events = Self.receive([Array(stream[..<cut]), Array(stream[cut...])], fast: true).events
            #expect(events == expected, "cut at \(cut)", sourceLocation: sourceLocation)
            if events != expected { return }
        }
        for first in stride(from: 0, through: stream.count, by: 3) {
            for second in first...min(stream.count, first + 12) {
                let chunks = [Array(stream[..<first]), Array(stream[first..<second]), Array(stream[second...])]
                let events = Self.receive(chunks, fast: true).events
                #expect(events == expected, "cuts at \(first), \(second)", sourceLocation: sourceLocation)
                if events != expected { return }
            }
        }
        let bytewise = Self.receive(stream.map { [$0] }, fast: true).events
        #expect(bytewise == expected, "byte by byte", sourceLocation: sourceLocation)
    }

    static func message(
        subscription: String = "0", publisher: String = "2", seq: String = "41", ts: String = "123456789",
        run: String = "k3x9q", ack: String? = nil, extra: [String] = [], body: String = "hello",
        contentLength: Bool = true, eol: String = "\n"
    ) -> String {
        var lines = ["MESSAGE", "subscription:\(subscription)", "destination:/topic/lt-k3x9q.t0", "message-id:17"]
        if let ack { lines.append("ack:\(ack)") }
        lines += ["x-lt-run:\(run)", "x-lt-pub:\(publisher)", "x-lt-seq:\(seq)", "x-lt-ts:\(ts)"]
        lines += extra
        if contentLength { lines.append("content-length:\(body.utf8.count)") }
        return lines.map { $0 + eol }.joined() + eol + body + "\0"
    }

    @Test("A plain Starling MESSAGE is read by the scanner, with every field")
    func plain() {
        let frame = Array(Self.message().utf8)
        let (events, receiver) = Self.receive([frame], fast: true)
        #expect(events == [.message(ReceivedMessage(run: true, publisher: 2, seq: 41, sentAt: 123_456_789, subscription: 0))])
        #expect(receiver.scanned == 1 && receiver.parsed == 0)
        #expect(events == Self.reference(frame))
        Self.expectAgreementAtEverySplit(frame)
    }

    @Test("Several frames in one input, heart-beat EOLs between them, with and without content-length")
    func several() {
        let stream = Self.message(seq: "0") + "\n" + Self.message(seq: "1", contentLength: false) + "\r\n\n"
            + Self.message(seq: "2", body: "") + Self.message(seq: "3", body: "", contentLength: false) + "\n"
        let bytes = Array(stream.utf8)
        let (events, receiver) = Self.receive([bytes], fast: true)
        #expect(events.count == 4)
        #expect(receiver.scanned == 4 && receiver.parsed == 0)
        #expect(receiver.parserIdle)
        Self.expectAgreementAtEverySplit(bytes)
    }

    @Test("CRLF line ends")
    func crlf() {
        let bytes = Array(Self.message(eol: "\r\n").utf8)
        let (events, receiver) = Self.receive([bytes], fast: true)
        #expect(events == [.message(ReceivedMessage(run: true, publisher: 2, seq: 41, sentAt: 123_456_789, subscription: 0))])
        #expect(receiver.scanned == 1)
        Self.expectAgreementAtEverySplit(bytes)
        // A lone CR at the end of an input, its LF in the next one.
        Self.expectAgreementAtEverySplit(Array((Self.message(eol: "\r\n") + "\r\n" + Self.message(seq: "42", eol: "\r\n")).utf8))
    }

    @Test("Escapes: in a needed value, in a foreign header, in ack, and an invalid one")
    func escapes() {
        for text in [
            Self.message(run: "k3x9q\\c"), Self.message(run: "k3\\\\x9q"), Self.message(extra: ["x-other:a\\cb\\nc"]),
            Self.message(ack: "T\\c1\\\\2"), Self.message(extra: ["bad:a\\tb"]), Self.message(extra: ["x\\cy:1"]),
        ] {
            let bytes = Array(text.utf8)
            let (_, receiver) = Self.receive([bytes], fast: true)
            #expect(receiver.scanned == 0)
            Self.expectAgreementAtEverySplit(bytes)
        }
        let (events, _) = Self.receive([Array(Self.message(ack: "T\\c1\\\\2").utf8)], fast: true)
        #expect(events == [.message(ReceivedMessage(
            run: true, publisher: 2, seq: 41, sentAt: 123_456_789, subscription: 0, ack: ByteBuffer(string: "T:1\\2")))])
    }

    @Test("ack without escapes is taken by the scanner; a raw ':' in it is data")
    func ack() {
        for ack in ["T_0@@session-abc@@17", "a:b", "x\ry"] {
            let bytes = Array(Self.message(ack: ack).utf8)
            let (events, receiver) = Self.receive([bytes], fast: true)
            #expect(receiver.scanned == 1)
            #expect(events == [.message(ReceivedMessage(
                run: true, publisher: 2, seq: 41, sentAt: 123_456_789, subscription: 0, ack: ByteBuffer(string: ack)))])
            Self.expectAgreementAtEverySplit(bytes)
        }
    }

    @Test("Foreign, missing, repeated and odd headers; RabbitMQ's order")
    func headers() {
        let rabbit = "MESSAGE\nx-lt-ts:99\nsubscription:1\ndestination:/topic/lt-k3x9q.t0\n"
            + "message-id:T_1@@session-Xy@@3\nredelivered:false\nack:T_1@@session-Xy@@3\nx-lt-seq:7\nx-lt-run:k3x9q\n"
            + "x-lt-pub:0\ncontent-type:text/plain\ncontent-length:3\n\nabc\0"
        let missing = "MESSAGE\nsubscription:0\ndestination:/topic/x\n\nbody\0"
        let cases = [
            rabbit, missing, Self.message(run: "other"), Self.message(run: ""), Self.message(run: "k3x9"),
            Self.message(subscription: "9"), Self.message(extra: ["subscription:5", "x-lt-seq:1000", "x-lt-run:zz"]),
            Self.message(extra: ["content-length:2"], body: "he", contentLength: false),
            Self.message(extra: ["content-length:5", "content-length:2"], body: "hello", contentLength: false),
            Self.message(extra: ["x-lt-pu:1", "x-lt-seqq:2", "subscriptio:3", "ac:4", "x-lt-t:5", "content-lengt:6"]),
            Self.message(extra: ["empty:", "colons:a:b:c", "nul:a\u{0}b", "cr:a\rb"]),
        ]
        for text in cases {
            let bytes = Array(text.utf8)
            let (_, receiver) = Self.receive([bytes], fast: true)
            #expect(receiver.scanned == 1, "\(text)")
            Self.expectAgreementAtEverySplit(bytes)
        }
        let (events, _) = Self.receive([Array(rabbit.utf8)], fast: true)
        #expect(events == [.message(ReceivedMessage(
            run: true, publisher: 0, seq: 7, sentAt: 99, subscription: 1, ack: ByteBuffer(string: "T_1@@session-Xy@@3")))])
        let (repeated, _) = Self.receive([Array(Self.message(extra: ["subscription:5", "x-lt-seq:1000"]).utf8)], fast: true)
        #expect(repeated == [.message(ReceivedMessage(run: true, publisher: 2, seq: 41, sentAt: 123_456_789, subscription: 0))])
    }

    @Test("Numbers the scanner leaves to Int(String): signs, blanks, empty, too long, overflow")
    func numbers() {
        for value in ["+5", "-1", "", " 5", "5 ", "12a", "0000000000000000000012", "18446744073709551615",
                      "18446744073709551616", "999999999999999999", "007"]
        {
            for text in [Self.message(subscription: value), Self.message(publisher: value), Self.message(seq: value),
                         Self.message(ts: value)]
            {
                Self.expectAgreementAtEverySplit(Array(text.utf8))
            }
        }
    }

    @Test("Bodies: NULs inside a content-length body, a missing NUL, a bad or huge content-length")
    func bodies() {
        let nuls = Self.message(body: "a\u{0}b\u{0}\u{0}c")
        let bytes = Array(nuls.utf8)
        #expect(Self.receive([bytes], fast: true).receiver.scanned == 1)
        Self.expectAgreementAtEverySplit(bytes)
        for text in [
            Self.message(extra: ["content-length:3"], body: "abcd", contentLength: false),  // no NUL after 3 bytes
            Self.message(extra: ["content-length:x"], contentLength: false),
            Self.message(extra: ["content-length:99999999999"], contentLength: false),
            Self.message(extra: ["content-length:+3"], body: "abc", contentLength: false),
        ] {
            Self.expectAgreementAtEverySplit(Array(text.utf8))
        }
    }

    @Test("Other commands go to the full parser, between MESSAGE frames")
    func otherCommands() {
        let stream = "CONNECTED\nversion:1.2\nheart-beat:0,0\n\n\0" + Self.message(seq: "0")
            + "RECEIPT\nreceipt-id:r1\n\n\0\n" + Self.message(seq: "1") + "ERROR\nmessage:bad\ncontent-length:3\n\nwhy\0"
        let bytes = Array(stream.utf8)
        let (events, receiver) = Self.receive([bytes], fast: true)
        #expect(events.count == 5)
        #expect(receiver.scanned == 2 && receiver.parsed == 3)
        Self.expectAgreementAtEverySplit(bytes)
        // Near misses of MESSAGE, and frames the parser refuses.
        for text in ["MESSAGES\n\n\0", "MESSAG\n\n\0", "message\n\n\0", "MESSAGE \n\n\0", "BOGUS\nreceipt:9\n\n\0",
                     "MESSAGE\r\r\n\n\0", "MESSAGE\nno-colon\n\n\0", "MESSAGE\n:empty-name\n\n\0"]
        {
            Self.expectAgreementAtEverySplit(Array((text + Self.message()).utf8))
        }
    }

    @Test("Non-ASCII: valid UTF-8 is left to the parser and agrees; invalid UTF-8 fails in both")
    func utf8() {
        Self.expectAgreementAtEverySplit(Array(Self.message(extra: ["x-name:caf\u{e9}"]).utf8))
        var invalid = Array(Self.message().utf8)
        let at = invalid.firstIndex(of: UInt8(ascii: "/"))!
        invalid[at] = 0xC3
        invalid[at + 1] = 0x28
        let expected = Self.reference(invalid)
        guard case .failure = expected.last else {
            Issue.record("the parser accepted invalid UTF-8")
            return
        }
        Self.expectAgreementAtEverySplit(invalid)
        // Many headers, beyond the parser's count limit.
        let many = Self.message(extra: (0..<300).map { "h\($0):v" })
        Self.expectAgreementAtEverySplit(Array(many.utf8))
    }

    @Test("Plain-ASCII check: every position of a '\\\\' or a high byte is caught")
    func plainASCII() {
        for length in 0..<40 {
            let clean = [UInt8](repeating: UInt8(ascii: "a"), count: length)
            #expect(clean.withUnsafeBytes { FastMessageScanner.isPlainASCII($0.baseAddress ?? UnsafeRawPointer(bitPattern: 1)!, count: length) })
            for position in 0..<length {
                for bad: UInt8 in [0x5C, 0x80, 0xFF, 0xC3] {
                    var bytes = clean
                    bytes[position] = bad
                    #expect(!bytes.withUnsafeBytes { FastMessageScanner.isPlainASCII($0.baseAddress!, count: length) })
                }
                var near = clean
                near[position] = 0x5B  // '[' and ']' are fine
                near[(position + 1) % length] = 0x5D
                #expect(near.withUnsafeBytes { FastMessageScanner.isPlainASCII($0.baseAddress!, count: length) })
            }
        }
    }

    @Test("ACKs are encoded as STOMPFrameEncoder encodes them, escapes included")
    func ackEncoding() {
        for id in ["T_0@@session-abc@@17", "a:b", "x\\y", "n\nl", "c\rr", "", "caf\u{e9}"] {
            var ours = ByteBuffer()
            ClientConnection.encodeAck(id: ByteBuffer(string: id), to: &ours)
            var theirs = ByteBuffer()
            STOMPFrameEncoder.write(STOMPFrame(.ack, headers: ["id": id]), to: &theirs, version: .v1_2)
            #expect(ours == theirs, "\(id)")
        }
    }
}
