import NIOCore
import Testing

@testable import StarlingSTOMP

@Suite("STOMPFrameEncoder")
struct STOMPFrameEncoderTests {
    @Test("A frame is written as command, headers in order, content-length last, blank line, body and NUL")
    func exactBytes() {
        let frame = STOMPFrame(
            .send,
            headers: ["destination": "/queue/a", "receipt": "1", "destination": "/queue/b"],
            body: ByteBuffer(text: "hi")
        )
        #expect(encoded(frame) == "SEND\ndestination:/queue/a\nreceipt:1\ndestination:/queue/b\ncontent-length:2\n\nhi\0")
    }

    @Test("A caller's content-length is dropped and recomputed, and omitted for an empty body")
    func contentLengthIsComputed() {
        let withBody = STOMPFrame(.message, headers: ["content-length": "999", "a": "b"], body: ByteBuffer(bytes: [0, 1, 0]))
        #expect(Array(STOMPFrameEncoder.encode(withBody, version: .v1_2).readableBytesView)
            == Array("MESSAGE\na:b\ncontent-length:3\n\n".utf8) + [0, 1, 0, 0])
        let empty = STOMPFrame(.receipt, headers: ["receipt-id": "7", "content-length": "4"])
        #expect(encoded(empty) == "RECEIPT\nreceipt-id:7\n\n\0")
    }

    @Test("Every command serialises and parses back to the same frame in every version")
    func everyCommandRoundTrips() throws {
        for version in STOMPVersion.allCases {
            for command in STOMPCommand.allCases {
                let frame = STOMPFrame(command, headers: ["id": "1"], body: ByteBuffer(text: "x"))
                var expected = frame
                expected.headers.add("content-length", "1")
                #expect(try parseFrames(encoded(frame, version: version), version: version) == [expected])
                #expect(encoded(frame, version: version).hasPrefix(command.rawValue + "\n"))
            }
        }
    }

    @Test("write appends to an existing buffer exactly what encode returns")
    func writeAppends() {
        let frame = STOMPFrame(.error, headers: ["message": "bad"], body: ByteBuffer(text: "details"))
        var buffer = ByteBuffer(string: "prefix")
        STOMPFrameEncoder.write(frame, to: &buffer, version: .v1_2)
        #expect(String(buffer: buffer) == "prefix" + encoded(frame))
    }

    @Test("The body's readable bytes are written without consuming the frame's buffer")
    func bodyNotConsumed() {
        var body = ByteBuffer(string: "xxpayload")
        body.moveReaderIndex(forwardBy: 2)
        let frame = STOMPFrame(.send, body: body)
        #expect(encoded(frame) == "SEND\ncontent-length:7\n\npayload\0")
        #expect(frame.body.readableBytes == 7)
    }

    @Test("writeHeadersAndBody writes a MESSAGE frame's bytes after its command line, escaped or not, in every version")
    func headersAndBodyMatchTheFrame() {
        let cases: [(STOMPHeaders, ByteBuffer)] = [
            (["destination": "/topic/a", "message-id": "m-1", "x-seq": "42"], ByteBuffer(text: "payload")),
            (["destination": "/topic/a:b", "note": "line\nbreak\r\\"], ByteBuffer(text: "x")),
            (["destination": "/queue/q", "content-length": "999"], ByteBuffer()),
        ]
        for version in STOMPVersion.allCases {
            for (headers, body) in cases {
                var part = ByteBuffer(string: "prefix")
                STOMPFrameEncoder.writeHeadersAndBody(headers, body: body, to: &part, version: version)
                let frame = encoded(STOMPFrame(.message, headers: headers, body: body), version: version)
                #expect(String(buffer: part).hasPrefix("prefix"))
                #expect("MESSAGE\n" + String(buffer: part).dropFirst("prefix".count) == frame)
            }
        }
    }
}
