import NIOCore
import Testing

@testable import StarlingSTOMP

@Suite("STOMPFrameParser")
struct STOMPFrameParserTests {
    static let sendFixture =
        "SEND\ndestination:/queue/a\nreceipt:77\ncontent-type:text/plain\n\nhello queue a\0"
    static let fixtures: [String] = [
        sendFixture,
        "CONNECT\naccept-version:1.2\nhost:stomp.github.org\nheart-beat:10000,10000\n\n\0",
        "SUBSCRIBE\r\nid:0\r\ndestination:/topic/prices.#\r\nack:client\r\n\r\n\0\r\n",
        "MESSAGE\nsubscription:0\nmessage-id:007\ndestination:/queue/a\ncontent-length:5\n\nab\0cd\0\n\n",
        "\n\r\n\nDISCONNECT\nreceipt:bye\n\n\0",
    ]

    @Test("Every command parses from its exact uppercase name, fed whole and byte by byte", arguments: Feeding.allCases)
    func everyCommandParses(feeding: Feeding) throws {
        for command in STOMPCommand.allCases {
            let frames = try parseFrames("\(command.rawValue)\nk:v\n\n\0", feeding: feeding)
            #expect(frames == [STOMPFrame(command, headers: ["k": "v"])])
        }
    }

    @Test("A frame yields its command, its headers in wire order and its body")
    func parsesHeadersAndBody() throws {
        let frames = try parseFrames(Self.sendFixture)
        #expect(frames.count == 1)
        let frame = try #require(frames.first)
        #expect(frame.command == .send)
        #expect(Array(frame.headers.map(\.name)) == ["destination", "receipt", "content-type"])
        #expect(frame.headers["destination"] == "/queue/a")
        #expect(frame.headers["receipt"] == "77")
        #expect(String(buffer: frame.body) == "hello queue a")
    }

    @Test("Each fixture gives the same frames fed whole, byte by byte, in chunks, and split at every offset")
    func fixturesResistSplitting() throws {
        for fixture in Self.fixtures {
            let bytes = Array(fixture.utf8)
            var parser = STOMPFrameParser()
            let expected = try parseFrames([bytes], parser: &parser)
            #expect(expected.count == 1)
            for feeding in Feeding.allCases {
                #expect(try parseFrames(fixture, feeding: feeding) == expected, "\(feeding)")
            }
            for split in 0...bytes.count {
                var parser = STOMPFrameParser()
                let frames = try parseFrames([Array(bytes[..<split]), Array(bytes[split...])], parser: &parser)
                #expect(frames == expected, "split at \(split)")
            }
        }
    }

    @Test("Several frames in one buffer are returned one per call, in order", arguments: Feeding.allCases)
    func severalFramesPerBuffer(feeding: Feeding) throws {
        let wire = Self.fixtures.joined()
        let frames = try parseFrames(wire, feeding: feeding)
        #expect(frames.map(\.command) == [.send, .connect, .subscribe, .message, .disconnect])
        var buffer = ByteBuffer(string: wire)
        var parser = STOMPFrameParser()
        let first = try parser.next(&buffer)
        #expect(first?.command == .send)
        #expect(buffer.readableBytes == wire.utf8.count - Self.sendFixture.utf8.count)
    }

    @Test("CRLF line ends are accepted on the command, every header and the blank line", arguments: Feeding.allCases)
    func crlfLineEnds(feeding: Feeding) throws {
        let frames = try parseFrames("SEND\r\ndestination:/queue/a\r\nx:\r\n\r\nbody\r\n\0", feeding: feeding)
        #expect(frames == [STOMPFrame(.send, headers: ["destination": "/queue/a", "x": ""], body: ByteBuffer(text: "body\r\n"))])
    }

    @Test("Heart-beat EOLs before, between and after frames are consumed without producing frames", arguments: Feeding.allCases)
    func heartBeatsAreSkipped(feeding: Feeding) throws {
        let wire = "\n\r\n\n" + "SEND\n\n\0" + "\n\n\r\n" + "\r\n" + "ACK\nid:1\n\n\0" + "\n"
        let frames = try parseFrames(wire, feeding: feeding)
        #expect(frames == [STOMPFrame(.send), STOMPFrame(.ack, headers: ["id": "1"])])
        #expect(try parseFrames("\n\n\r\n\n", feeding: feeding).isEmpty)
    }

    @Test("A partial frame is kept inside the parser and completed by a later buffer")
    func partialFrameIsKept() throws {
        var parser = STOMPFrameParser()
        var first = ByteBuffer(string: "SEND\ndestination:/q")
        #expect(try parser.next(&first) == nil)
        #expect(first.readableBytes == 0)
        var second = ByteBuffer(string: "ueue/a\n\nhel")
        #expect(try parser.next(&second) == nil)
        var third = ByteBuffer(string: "lo\0SEND")
        let frame = try parser.next(&third)
        #expect(frame == STOMPFrame(.send, headers: ["destination": "/queue/a"], body: ByteBuffer(text: "hello")))
        #expect(try parser.next(&third) == nil)
        var fourth = ByteBuffer(string: "\n\n\0")
        #expect(try parser.next(&fourth) == STOMPFrame(.send))
    }

    @Test("A content-length body may contain NUL octets and is read exactly", arguments: Feeding.allCases)
    func contentLengthBodyWithNull(feeding: Feeding) throws {
        let frames = try parseFrames("SEND\ncontent-length:5\n\n\0a\0b\0\0SEND\n\n\0", feeding: feeding)
        #expect(frames.count == 2)
        #expect(Array(frames[0].body.readableBytesView) == [0, 0x61, 0, 0x62, 0])
        #expect(frames[0].headers["content-length"] == "5")
        #expect(frames[1] == STOMPFrame(.send))
    }

    @Test("content-length 0 gives an empty body, and no content-length reads up to the first NUL")
    func emptyAndNullTerminatedBodies() throws {
        #expect(try parseFrames("SEND\ncontent-length:0\n\n\0")[0].body.readableBytes == 0)
        #expect(try parseFrames("SEND\ncontent-length:007\n\n1234567\0")[0].body == ByteBuffer(text: "1234567"))
        let frames = try parseFrames("SEND\n\nabc\0def\0")
        #expect(frames.count == 1)
        #expect(frames[0].body == ByteBuffer(text: "abc"))
    }

    @Test("Repeated headers are all kept and lookup returns the first occurrence")
    func repeatedHeadersFirstWins() throws {
        let frame = try parseFrames("MESSAGE\nfoo:World\nfoo:Hello\n\n\0")[0]
        #expect(frame.headers["foo"] == "World")
        #expect(frame.headers.count == 2)
        #expect(frame.headers == STOMPHeaders([(name: "foo", value: "World"), (name: "foo", value: "Hello")]))
    }

    @Test("Only the first content-length decides the body length")
    func firstContentLengthWins() throws {
        let frame = try parseFrames("SEND\ncontent-length:2\ncontent-length:bogus\n\nab\0")[0]
        #expect(frame.body == ByteBuffer(text: "ab"))
    }

    @Test("Values split at the first colon keep later colons, may be empty and are never trimmed")
    func headerValueShapes() throws {
        let frame = try parseFrames("SEND\nurl:http://x:80/\nempty:\n spaced : value \n\n\0")[0]
        #expect(frame.headers["url"] == "http://x:80/")
        #expect(frame.headers["empty"] == "")
        #expect(frame.headers[" spaced "] == " value ")
    }

    @Test("UTF-8 header names and values decode to the same text")
    func utf8Headers() throws {
        let frame = try parseFrames("SEND\nnäme:grüße 😀\n\n\0", feeding: .byteByByte)[0]
        #expect(frame.headers["näme"] == "grüße 😀")
    }

    @Test("Lowercase or unknown commands are rejected with a printable, truncated form of the line")
    func unknownCommands() {
        #expect(parseError("send\n\n\0") == .unknownCommand("send"))
        #expect(parseError("GET / HTTP/1.1\r\nHost: x\r\n\r\n") == .unknownCommand("GET / HTTP/1.1"))
        #expect(parseError("SEND \n\n\0") == .unknownCommand("SEND "))
        #expect(parseError("\u{1}SEN\n\n\0") == .unknownCommand("\\x01SEN"))
    }

    @Test("Header lines without a colon or with an empty name are malformed")
    func malformedHeaders() {
        #expect(parseError("SEND\nnocolon\n\n\0") == .malformedHeader("nocolon"))
        #expect(parseError("SEND\n:value\n\n\0") == .malformedHeader(":value"))
    }

    @Test("Header bytes that are not UTF-8 are rejected")
    func invalidUTF8() throws {
        var parser = STOMPFrameParser()
        var buffer = ByteBuffer(bytes: Array("SEND\nname:".utf8) + [0xC3, 0x28] + Array("\n\n\0".utf8))
        #expect(throws: STOMPParseError.invalidUTF8) { try parser.next(&buffer) }
    }

    @Test("A frame refused for its command, a header or its content-length still names its receipt")
    func failedFrameReceipt() {
        let cases: [(String, STOMPParseError)] = [
            ("FROBNICATE\nreceipt:r1\n\n\0", .unknownCommand("FROBNICATE")),
            ("SEND\nbad:\\t\nreceipt:r1\n\n\0", .invalidEscape("\\t")),
            ("SEND\ncontent-length:abc\nreceipt:r1\n\nx\0", .invalidContentLength("abc")),
            ("SEND\nnocolon\nreceipt:r1\n\n\0", .malformedHeader("nocolon")),
        ]
        for (input, expected) in cases {
            for feeding in [Feeding.whole, .byteByByte] {
                var parser = STOMPFrameParser()
                #expect(throws: expected) { _ = try parseFrames(feeding.chunks(of: Array(input.utf8)), parser: &parser) }
                #expect(parser.failedFrameReceipt == "r1", "\(input)")
            }
        }
        var parser = STOMPFrameParser(limits: .init(maxHeaderCount: 1))
        #expect(throws: STOMPParseError.unknownCommand("NOPE")) {
            _ = try parseFrames([Array("NOPE\nreceipt:r2\na:b\n\n\0".utf8)], parser: &parser)
        }
        #expect(parser.failedFrameReceipt == "r2")
    }

    @Test("After an error the parser keeps throwing the same error, even for valid input")
    func poisonedAfterError() {
        var parser = STOMPFrameParser()
        var bad = ByteBuffer(string: "BOGUS\n\n\0")
        #expect(throws: STOMPParseError.unknownCommand("BOGUS")) { try parser.next(&bad) }
        var good = ByteBuffer(string: "SEND\n\n\0")
        #expect(throws: STOMPParseError.unknownCommand("BOGUS")) { try parser.next(&good) }
    }

    @Test("Changing the version applies to the next frame, not one already started")
    func versionAppliesFromNextFrame() throws {
        var parser = STOMPFrameParser(version: .v1_2)
        var buffer = ByteBuffer(string: "SEND\na:x\\cy\n")
        #expect(try parser.next(&buffer) == nil)
        parser.version = .v1_0
        buffer = ByteBuffer(string: "b:x\\cy\n\n\0SEND\nc:x\\cy\n\n\0")
        let first = try #require(try parser.next(&buffer))
        #expect(first.headers["a"] == "x:y")
        #expect(first.headers["b"] == "x:y")
        let second = try #require(try parser.next(&buffer))
        #expect(second.headers["c"] == "x\\cy")
    }
}
