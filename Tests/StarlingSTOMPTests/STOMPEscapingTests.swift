import NIOCore
import Testing

@testable import StarlingSTOMP

@Suite("Header escaping")
struct STOMPEscapingTests {
    @Test("STOMP 1.2 unescapes \\r \\n \\c and \\\\ in header names and values")
    func decodes12() throws {
        let frame = try parseFrames("SEND\na\\cb:1\\r\\n2\\c3\\\\4\n\n\0", version: .v1_2)[0]
        #expect(frame.headers["a:b"] == "1\r\n2:3\\4")
    }

    @Test("STOMP 1.1 unescapes \\n \\c and \\\\ but rejects \\r")
    func decodes11() throws {
        let frame = try parseFrames("SEND\na\\cb:1\\n2\\c3\\\\4\n\n\0", version: .v1_1)[0]
        #expect(frame.headers["a:b"] == "1\n2:3\\4")
        #expect(parseError("SEND\na:1\\r\n\n\0", version: .v1_1) == .invalidEscape("\\r"))
    }

    @Test("STOMP 1.0 takes backslashes literally, including sequences undefined in later versions")
    func literal10() throws {
        let frame = try parseFrames("SEND\na\\c:1\\n\\t\\\n\n\0", version: .v1_0)[0]
        #expect(frame.headers["a\\c"] == "1\\n\\t\\")
    }

    @Test("Undefined escapes and a trailing backslash are fatal in 1.1 and 1.2", arguments: [STOMPVersion.v1_1, .v1_2])
    func invalidEscapes(version: STOMPVersion) {
        #expect(parseError("SEND\na:x\\ty\n\n\0", version: version) == .invalidEscape("\\t"))
        #expect(parseError("SEND\na:x\\\n\n\0", version: version) == .invalidEscape("\\"))
        #expect(parseError("SEND\na\\x:1\n\n\0", version: version) == .invalidEscape("\\x"))
        #expect(parseError("SEND\na:\\\u{1}\n\n\0", version: version) == .invalidEscape("\\\\x01"))
    }

    @Test("CONNECT, STOMP and CONNECTED headers are never unescaped, so \\c stays literal", arguments: [STOMPCommand.connect, .stomp, .connected])
    func handshakeNotUnescaped(command: STOMPCommand) throws {
        let frame = try parseFrames("\(command.rawValue)\npasscode:a\\cb\\q\n\n\0", version: .v1_2)[0]
        #expect(frame.headers["passcode"] == "a\\cb\\q")
    }

    @Test("The encoder escapes per version: 1.2 all four, 1.1 all but CR, 1.0 nothing")
    func encoderEscapesPerVersion() {
        let frame = STOMPFrame(.message, headers: ["k:\\": "a\rb\nc:d\\e"])
        #expect(encoded(frame, version: .v1_2) == "MESSAGE\nk\\c\\\\:a\\rb\\nc\\cd\\\\e\n\n\0")
        #expect(encoded(frame, version: .v1_1) == "MESSAGE\nk\\c\\\\:a\rb\\nc\\cd\\\\e\n\n\0")
        #expect(encoded(frame, version: .v1_0) == "MESSAGE\nk:\\:a b c:d\\e\n\n\0")
    }

    @Test("The encoder never escapes CONNECT or CONNECTED headers")
    func encoderHandshakeRaw() {
        let frame = STOMPFrame(.connected, headers: ["server": "starling\\1:0"])
        #expect(encoded(frame, version: .v1_2) == "CONNECTED\nserver:starling\\1:0\n\n\0")
    }

    @Test("Unescaped writes turn CR and LF into spaces so a value cannot inject headers")
    func rawWritesCannotInject() {
        var buffer = ByteBuffer()
        STOMPFrameEncoder.writeHeader("x", "a\n\nSEND\r", to: &buffer, version: .v1_2, escape: false)
        #expect(String(buffer: buffer) == "x:a  SEND \n")
    }

    @Test("Names and values with special characters round-trip through encoder and parser per version", arguments: STOMPVersion.allCases)
    func roundTrip(version: STOMPVersion) throws {
        let specials: String
        switch version {
        case .v1_2: specials = "\r\n:\\"
        case .v1_1: specials = "\n:\\"
        case .v1_0: specials = "\\"
        }
        let headers: STOMPHeaders = ["n\(specials)ame": "v\(specials)al\(specials)ue", "plain": "é😀"]
        let frame = STOMPFrame(.send, headers: headers)
        for feeding in Feeding.allCases {
            let frames = try parseFrames(encoded(frame, version: version), feeding: feeding, version: version)
            #expect(frames == [frame], "\(version) \(feeding)")
        }
    }
}
