import NIOCore
import Testing

@testable import StarlingSTOMP

@Suite("Parser limits and errors")
struct STOMPParserLimitsTests {
    @Test("Defaults are 32-byte commands, 64 headers, 8192-byte header lines and 1 MiB bodies")
    func defaults() {
        let limits = STOMPParserLimits()
        #expect(limits == STOMPParserLimits(maxCommandLength: 32, maxHeaderCount: 64, maxHeaderLineLength: 8192, maxBodySize: 1_048_576))
    }

    @Test("A command line over the limit fails with commandTooLong, one at the limit is judged as a command", arguments: Feeding.allCases)
    func commandLength(feeding: Feeding) {
        let limits = STOMPParserLimits(maxCommandLength: 8)
        #expect(parseError("ABCDEFGHI\n\n\0", feeding: feeding, limits: limits) == .commandTooLong(limit: 8))
        #expect(parseError("ABCDEFGH\r\n\n\0", feeding: feeding, limits: limits) == .unknownCommand("ABCDEFGH"))
        #expect(parseError("ABCDEFGHIJ", feeding: feeding, limits: limits) == .commandTooLong(limit: 8))
        #expect(parseError("CONNECTED\n\n\0", feeding: feeding) == nil)
    }

    @Test("A 65th header fails with tooManyHeaders while 64 are accepted", arguments: [Feeding.whole, .chunksOf7])
    func headerCount(feeding: Feeding) throws {
        let sixtyFour = (0..<64).map { "h\($0):v\n" }.joined()
        #expect(try parseFrames("SEND\n" + sixtyFour + "\n\0", feeding: feeding)[0].headers.count == 64)
        #expect(parseError("SEND\n" + sixtyFour + "x:y\n\n\0", feeding: feeding) == .tooManyHeaders(limit: 64))
    }

    @Test("A header line over the limit fails with headerLineTooLong, one at the limit (with LF or CRLF) is accepted", arguments: [Feeding.whole, .chunksOf7])
    func headerLineLength(feeding: Feeding) throws {
        let atLimit = "k:" + String(repeating: "v", count: 8190)
        #expect(try parseFrames("SEND\n\(atLimit)\n\n\0", feeding: feeding)[0].headers["k"]?.utf8.count == 8190)
        #expect(try parseFrames("SEND\r\n\(atLimit)\r\n\r\n\0", feeding: feeding)[0].headers["k"]?.utf8.count == 8190)
        #expect(parseError("SEND\n\(atLimit)x\n\n\0", feeding: feeding) == .headerLineTooLong(limit: 8192))
        #expect(parseError("SEND\n\(atLimit)x\r\n\n\0", feeding: feeding) == .headerLineTooLong(limit: 8192))
    }

    @Test("An endless header line fails after the limit is exceeded, without waiting for its LF")
    func endlessHeaderLineFailsEarly() throws {
        var parser = STOMPFrameParser()
        var head = ByteBuffer(string: "SEND\nk:")
        #expect(try parser.next(&head) == nil)
        let chunk = [UInt8](repeating: UInt8(ascii: "a"), count: 1024)
        var fed = 0
        var failure: STOMPParseError?
        while failure == nil && fed < 100_000_000 {
            var buffer = ByteBuffer(bytes: chunk)
            do {
                _ = try parser.next(&buffer)
                fed += chunk.count
            } catch let error as STOMPParseError {
                failure = error
            }
        }
        #expect(failure == .headerLineTooLong(limit: 8192))
        #expect(fed <= 8192 + 2)

        var fresh = STOMPFrameParser()
        var huge = ByteBuffer(string: "SEND\nk:")
        huge.writeRepeatingByte(UInt8(ascii: "a"), count: 16 << 20)
        #expect(throws: STOMPParseError.headerLineTooLong(limit: 8192)) { try fresh.next(&huge) }
    }

    @Test("A content-length over maxBodySize fails as soon as the headers end, before any body arrives")
    func contentLengthOverLimit() throws {
        var parser = STOMPFrameParser()
        var buffer = ByteBuffer(string: "SEND\ncontent-length:1048577\n\n")
        #expect(throws: STOMPParseError.bodyTooLarge(limit: 1_048_576)) { try parser.next(&buffer) }
        #expect(parseError("SEND\ncontent-length:99999999999999999999999999\n\n") == .bodyTooLarge(limit: 1_048_576))
    }

    @Test("A body at maxBodySize is accepted with or without content-length", arguments: [Feeding.whole, .chunksOf7])
    func bodyAtLimit(feeding: Feeding) throws {
        let limits = STOMPParserLimits(maxBodySize: 16)
        let body = String(repeating: "b", count: 16)
        #expect(try parseFrames("SEND\n\n\(body)\0", feeding: feeding, limits: limits)[0].body.readableBytes == 16)
        #expect(try parseFrames("SEND\ncontent-length:16\n\n\(body)\0", feeding: feeding, limits: limits)[0].body.readableBytes == 16)
        #expect(parseError("SEND\ncontent-length:17\n\n", feeding: feeding, limits: limits) == .bodyTooLarge(limit: 16))
    }

    @Test("A NUL-terminated body fails once it exceeds maxBodySize, without waiting for the NUL")
    func unterminatedBodyFailsEarly() throws {
        let limits = STOMPParserLimits(maxBodySize: 16)
        #expect(parseError("SEND\n\n" + String(repeating: "b", count: 17), limits: limits) == .bodyTooLarge(limit: 16))
        #expect(parseError("SEND\n\n" + String(repeating: "b", count: 17), feeding: .byteByByte, limits: limits) == .bodyTooLarge(limit: 16))
        #expect(parseError("SEND\n\n" + String(repeating: "b", count: 16), feeding: .byteByByte, limits: limits) == nil)
        for feeding in Feeding.allCases {
            #expect(parseError("SEND\n\n" + String(repeating: "b", count: 17) + "\0", feeding: feeding, limits: limits) == .bodyTooLarge(limit: 16))
        }

        var parser = STOMPFrameParser()
        var huge = ByteBuffer(string: "SEND\n\n")
        huge.writeRepeatingByte(UInt8(ascii: "b"), count: 4 << 20)
        #expect(throws: STOMPParseError.bodyTooLarge(limit: 1_048_576)) { try parser.next(&huge) }
    }

    @Test("A content-length that is not a plain non-negative decimal is invalidContentLength", arguments: ["abc", "-1", "", " 5", "5 ", "+5", "0x10", "1.0"])
    func badContentLength(value: String) {
        #expect(parseError("SEND\ncontent-length:\(value)\n\nbody\0") == .invalidContentLength(value))
    }

    @Test("A content-length body not followed by NUL fails with missingNullTerminator", arguments: Feeding.allCases)
    func missingNull(feeding: Feeding) {
        #expect(parseError("SEND\ncontent-length:3\n\nabcd\0", feeding: feeding) == .missingNullTerminator)
        #expect(parseError("SEND\ncontent-length:0\n\n\n", feeding: feeding) == .missingNullTerminator)
    }

    @Test("Error descriptions are one printable sentence naming the limit or the offending input")
    func descriptions() {
        #expect(STOMPParseError.commandTooLong(limit: 32).description == "Command line longer than 32 bytes")
        #expect(STOMPParseError.tooManyHeaders(limit: 64).description == "More than 64 headers in a frame")
        #expect(STOMPParseError.headerLineTooLong(limit: 8192).description == "Header line longer than 8192 bytes")
        #expect(STOMPParseError.bodyTooLarge(limit: 1_048_576).description == "Body larger than 1048576 bytes")
        #expect(STOMPParseError.unknownCommand("GET").description == "Unknown command 'GET'")
        let long = String(repeating: "X", count: 100)
        #expect(parseError(long + "\n\n", limits: .init(maxCommandLength: 200)) == .unknownCommand(String(repeating: "X", count: 32) + "..."))
        let errors: [STOMPParseError] = [
            .unknownCommand("a"), .commandTooLong(limit: 1), .tooManyHeaders(limit: 1), .headerLineTooLong(limit: 1),
            .bodyTooLarge(limit: 1), .malformedHeader("a"), .invalidEscape("\\t"), .invalidContentLength("x"),
            .missingNullTerminator, .invalidUTF8,
        ]
        for error in errors {
            #expect(!error.description.contains("\n") && !error.description.contains("\r"))
        }
    }
}
