import NIOCore
import NIOEmbedded
import Testing

@testable import StarlingWebSocket

@Suite("WebSocket connection handler (RFC 6455 §5, §7)")
struct WebSocketConnectionHandlerTests {
    /// Expects the server to have sent exactly one Close with `code` and closed TCP, and the delegate to have been
    /// told `code` once.
    func expectFailed(_ connection: Connection, code: UInt16, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let frames = try connection.outboundFrames()
        #expect(frames.map(\.opcode) == [.close], sourceLocation: sourceLocation)
        #expect(frames.first?.closeCode == code, sourceLocation: sourceLocation)
        #expect(!connection.channel.isActive, sourceLocation: sourceLocation)
        #expect(connection.delegate.closeCodes == [WebSocketCloseCode(rawValue: code)], sourceLocation: sourceLocation)
        #expect(connection.handler.isClosing, sourceLocation: sourceLocation)
    }

    @Test("Text and binary messages reach the delegate with their type")
    func textAndBinary() throws {
        let connection = try Connection()
        try connection.send(clientFrame(.text, "Hello"))
        try connection.send(clientFrame(.binary, buffer([0, 1, 2, 0xFF])))
        #expect(connection.delegate.texts.first == "Hello")
        #expect(connection.delegate.messages.map(\.isText) == [true, false])
        #expect(connection.delegate.messages.last?.bytes == [0, 1, 2, 0xFF])
        #expect(try connection.outboundBuffers().isEmpty)
    }

    @Test("Frames fed byte by byte and several per buffer all arrive")
    func arbitrarySplits() throws {
        var wire = ByteBuffer()
        for text in ["one", String(repeating: "x", count: 300), "three"] {
            var frame = clientFrame(.text, text)
            wire.writeBuffer(&frame)
        }
        let whole = try Connection()
        try whole.send(wire)
        let byteByByte = try Connection()
        for byte in wire.readableBytesView { try byteByByte.send(buffer([byte])) }
        #expect(whole.delegate.texts == ["one", String(repeating: "x", count: 300), "three"])
        #expect(byteByByte.delegate.texts == whole.delegate.texts)
    }

    @Test("A fragmented message is reassembled and a ping between fragments is answered first")
    func fragmentationWithPing() throws {
        let connection = try Connection()
        try connection.send(clientFrame(.text, "Hel", fin: false))
        try connection.send(clientFrame(.ping, "are you there"))
        #expect(connection.delegate.messages.isEmpty)
        let pong = try connection.outboundFrames()
        #expect(pong == [WebSocketFrame(opcode: .pong, payload: buffer("are you there"))])
        try connection.send(clientFrame(.continuation, "lo, ", fin: false))
        try connection.send(clientFrame(.continuation, "κόσμε"))
        #expect(connection.delegate.texts == ["Hello, κόσμε"])
    }

    @Test("A ping is answered with a pong carrying the same payload, flushed at the end of the read")
    func pingPong() throws {
        let connection = try Connection()
        try connection.send(clientFrame(.ping, buffer([1, 2, 3])))
        try connection.send(clientFrame(.pong, buffer([9])))  // unsolicited pong: ignored
        let outbound = try connection.outboundBuffers()
        #expect(outbound.map { Array($0.readableBytesView) } == [[0x8A, 0x03, 1, 2, 3]])
    }

    @Test("Small messages are batched into one buffer written at flush; nothing goes out before the flush")
    func sendMessageBatched() throws {
        let connection = try Connection()
        let payload = buffer(String(repeating: "p", count: 200))
        connection.handler.sendMessage(prefix: buffer("MESSAGE\n"), payload: payload, isText: true)
        connection.handler.sendMessage(prefix: nil, payload: buffer("second"), isText: true)
        #expect(try connection.channel.readOutbound(as: ByteBuffer.self) == nil, "nothing before flush")
        connection.handler.flush()
        let outbound = try connection.outboundBuffers()
        #expect(outbound.count == 1)
        let expected = [0x81, 0x7E, 0x00, 208] + Array("MESSAGE\n".utf8) + Array(payload.readableBytesView)
            + [0x81, 6] + Array("second".utf8)
        #expect(Array(outbound[0].readableBytesView) == expected)
    }

    @Test("A payload above the batch limit is written without copying, after what was batched before it")
    func sendMessageLargeIsZeroCopyAndOrdered() throws {
        let connection = try Connection()
        let large = buffer(String(repeating: "L", count: OutboundBatch.maxCopiedBytes + 1))
        connection.handler.sendMessage(prefix: nil, payload: buffer("before"), isText: true)
        connection.handler.sendMessage(prefix: buffer("MESSAGE\n"), payload: large, isText: true)
        connection.handler.sendMessage(prefix: nil, payload: buffer("after"), isText: true)
        connection.handler.flush()
        let outbound = try connection.outboundBuffers()
        #expect(outbound.count == 4)
        #expect(Array(outbound[0].readableBytesView) == [0x81, 6] + Array("before".utf8))
        let length = 8 + large.readableBytes
        #expect(Array(outbound[1].readableBytesView) == [0x81, 0x7E, UInt8(length >> 8), UInt8(length & 0xFF)] + Array("MESSAGE\n".utf8))
        #expect(outbound[2] == large)
        // Zero copy: the third write is the caller's storage.
        let sameStorage = outbound[2].withUnsafeReadableBytes { written in
            large.withUnsafeReadableBytes { original in written.baseAddress == original.baseAddress }
        }
        #expect(sameStorage)
        #expect(Array(outbound[3].readableBytesView) == [0x81, 5] + Array("after".utf8))
    }

    @Test("Batched messages go out before a pong and before a close frame")
    func batchedBeforeControlFrames() throws {
        let connection = try Connection()
        connection.handler.sendMessage(prefix: nil, payload: buffer("one"), isText: true)
        try connection.send(clientFrame(.ping, "p"))
        connection.handler.sendMessage(prefix: nil, payload: buffer("two"), isText: true)
        connection.handler.close(code: .goingAway, reason: "bye")
        let frames = try connection.outboundFrames()
        #expect(frames == [
            WebSocketFrame(opcode: .text, payload: buffer("one")), WebSocketFrame(opcode: .pong, payload: buffer("p")),
            WebSocketFrame(opcode: .text, payload: buffer("two")),
            WebSocketFrame(opcode: .close, payload: closePayload(1001, Array("bye".utf8))),
        ])
    }

    @Test("sendMessage with an empty payload or no prefix is one well-formed frame")
    func sendMessageEdges() throws {
        let connection = try Connection()
        connection.handler.sendMessage(prefix: nil, payload: buffer("abc"), isText: false)
        connection.handler.sendMessage(prefix: buffer("xyz"), payload: ByteBuffer(), isText: true)
        connection.handler.flush()
        let frames = try connection.outboundFrames()
        #expect(frames == [
            WebSocketFrame(opcode: .binary, payload: buffer("abc")), WebSocketFrame(opcode: .text, payload: buffer("xyz")),
        ])
    }

    @Test("A server-initiated close sends Close, ignores later messages and closes TCP on the peer's Close")
    func serverInitiatedClose() throws {
        let connection = try Connection()
        connection.handler.close(code: .goingAway, reason: "shutting down")
        #expect(connection.handler.isClosing)
        let sent = try connection.outboundFrames()
        #expect(sent == [WebSocketFrame(opcode: .close, payload: closePayload(1001, Array("shutting down".utf8)))])
        connection.handler.sendMessage(prefix: nil, payload: buffer("late"), isText: true)
        connection.handler.close(code: .normalClosure, reason: "again")
        try connection.send(clientFrame(.text, "ignored"))
        try connection.send(clientFrame(.ping, "ignored"))
        #expect(connection.delegate.messages.isEmpty)
        #expect(try connection.outboundBuffers().isEmpty)
        #expect(connection.channel.isActive)
        try connection.send(clientFrame(.close, closePayload(1001)))
        #expect(!connection.channel.isActive)
        #expect(connection.delegate.closeCodes == [.goingAway])
    }

    @Test("Without the peer's Close, TCP is dropped after closeTimeout")
    func closeTimeout() throws {
        var configuration = WebSocketConfiguration()
        configuration.closeTimeout = .seconds(2)
        let connection = try Connection(configuration: configuration)
        connection.handler.close(code: .policyViolation, reason: "")
        connection.channel.embeddedEventLoop.advanceTime(by: .milliseconds(1999))
        #expect(connection.channel.isActive)
        connection.channel.embeddedEventLoop.advanceTime(by: .milliseconds(1))
        #expect(!connection.channel.isActive)
        #expect(connection.delegate.closeCodes == [.policyViolation])
    }

    @Test("A long close reason is cut to 123 bytes without splitting a character")
    func closeReasonIsTruncated() throws {
        let connection = try Connection()
        connection.handler.close(code: .normalClosure, reason: String(repeating: "é", count: 100))
        let frame = try #require(try connection.outboundFrames().first)
        #expect(frame.payload.readableBytes == 2 + 122)
    }

    @Test("The peer's Close is echoed with its code, TCP is closed and the delegate told once")
    func peerInitiatedClose() throws {
        let connection = try Connection()
        try connection.send(clientFrame(.close, closePayload(4001, Array("bye".utf8))))
        let frames = try connection.outboundFrames()
        #expect(frames == [WebSocketFrame(opcode: .close, payload: closePayload(4001))])
        #expect(!connection.channel.isActive)
        #expect(connection.delegate.closeCodes == [WebSocketCloseCode(rawValue: 4001)])
    }

    @Test("An empty Close is answered with 1000 and reported without a code")
    func emptyPeerClose() throws {
        let connection = try Connection()
        try connection.send(clientFrame(.close))
        #expect(try connection.outboundFrames().map(\.closeCode) == [1000])
        #expect(connection.delegate.closeCodes == [nil])
    }

    @Test("A TCP drop without Close is reported once with no code")
    func tcpDrop() throws {
        let connection = try Connection()
        try connection.channel.close().wait()
        #expect(connection.delegate.closeCodes == [nil])
        #expect(connection.handler.delegate == nil, "the delegate is released after it was told")
    }

    @Test(
        "Protocol violations close with 1002",
        arguments: [
            ("unmasked frame", clientFrame(.text, buffer("hi"), masked: false)),
            ("RSV2 set", rawClientFrame(byte0: 0xA1)),
            ("RSV3 set", rawClientFrame(byte0: 0x91)),
            ("RSV1 without deflate", rawClientFrame(byte0: 0xC1)),
            ("reserved data opcode 3", rawClientFrame(byte0: 0x83)),
            ("reserved data opcode 7", rawClientFrame(byte0: 0x87)),
            ("reserved control opcode 0xB", rawClientFrame(byte0: 0x8B)),
            ("reserved control opcode 0xF", rawClientFrame(byte0: 0x8F)),
            ("ping over 125 bytes", clientFrame(.ping, ByteBuffer(repeating: 0x61, count: 126))),
            ("fragmented ping", clientFrame(.ping, buffer("x"), fin: false)),
            ("continuation without a message", clientFrame(.continuation, "x")),
            ("one-byte close payload", clientFrame(.close, buffer([0x03]))),
        ]
    )
    func protocolErrors(name: String, frame: ByteBuffer) throws {
        let connection = try Connection()
        try connection.send(frame)
        try self.expectFailed(connection, code: 1002)
    }

    @Test("A new data frame while a fragmented message is open closes with 1002")
    func interleavedMessages() throws {
        let connection = try Connection()
        try connection.send(clientFrame(.text, "a", fin: false))
        try connection.send(clientFrame(.binary, "b"))
        try self.expectFailed(connection, code: 1002)
        #expect(connection.delegate.messages.isEmpty)
    }

    @Test("RSV1 on a continuation or control frame closes with 1002 even with deflate")
    func compressionBitMisuse() throws {
        for frames in [[clientFrame(.text, "a", fin: false), rawClientFrame(byte0: 0xC0)], [rawClientFrame(byte0: 0xC9)]] {
            let connection = try Connection(deflate: NegotiatedDeflate())
            for frame in frames { try connection.send(frame) }
            try self.expectFailed(connection, code: 1002)
        }
    }

    @Test("Close codes that may not be sent close with 1002", arguments: [0, 999, 1004, 1005, 1006, 1012, 1015, 2999, 5000] as [UInt16])
    func invalidCloseCodes(code: UInt16) throws {
        let connection = try Connection()
        try connection.send(clientFrame(.close, closePayload(code)))
        try self.expectFailed(connection, code: 1002)
    }

    @Test("Close codes valid on the wire are accepted", arguments: [1000, 1003, 1007, 1011, 3000, 4999] as [UInt16])
    func validCloseCodes(code: UInt16) throws {
        let connection = try Connection()
        try connection.send(clientFrame(.close, closePayload(code)))
        #expect(try connection.outboundFrames().map(\.closeCode) == [code])
        #expect(WebSocketCloseCode(rawValue: code).isValidOnWire)
    }

    @Test("Invalid UTF-8 in a text message, across fragments, or in a close reason closes with 1007")
    func invalidUTF8() throws {
        let cases: [[ByteBuffer]] = [
            [clientFrame(.text, buffer([0x61, 0xFF]))],
            [clientFrame(.text, buffer([0xCE]), fin: false), clientFrame(.continuation, buffer([0x41]))],
            [clientFrame(.text, buffer([0xF0, 0x9F]), fin: false), clientFrame(.continuation, buffer([0x8E]))],  // truncated at the end
            [clientFrame(.close, closePayload(1000, [0xC0, 0x80]))],
        ]
        for frames in cases {
            let connection = try Connection()
            for frame in frames { try connection.send(frame) }
            try self.expectFailed(connection, code: 1007)
        }
        // A character split between fragments is fine, and binary is never checked.
        let connection = try Connection()
        try connection.send(clientFrame(.text, buffer([0xCE]), fin: false))
        try connection.send(clientFrame(.continuation, buffer([0xBA])))
        try connection.send(clientFrame(.binary, buffer([0xFF])))
        #expect(connection.delegate.texts.first == "κ")
        #expect(connection.channel.isActive)
    }

    @Test("A frame over maxFrameSize closes with 1009 from its header alone")
    func frameTooLarge() throws {
        var configuration = WebSocketConfiguration()
        configuration.maxFrameSize = 1000
        let connection = try Connection(configuration: configuration)
        try connection.send(buffer([0x82, 0xFE, 0x03, 0xE9, 1, 2, 3, 4]))  // 1001 bytes announced, none sent
        try self.expectFailed(connection, code: 1009)
    }

    @Test("A fragmented message over maxMessageSize closes with 1009")
    func messageTooLarge() throws {
        var configuration = WebSocketConfiguration()
        configuration.maxMessageSize = 1000
        let connection = try Connection(configuration: configuration)
        try connection.send(clientFrame(.binary, ByteBuffer(repeating: 1, count: 600), fin: false))
        try connection.send(clientFrame(.continuation, ByteBuffer(repeating: 1, count: 401)))
        try self.expectFailed(connection, code: 1009)
    }

    @Test("A pipeline write is sent as one binary message and its promise succeeds")
    func pipelineWrite() throws {
        let connection = try Connection()
        try connection.channel.writeAndFlush(buffer("raw")).wait()
        #expect(try connection.outboundFrames() == [WebSocketFrame(opcode: .binary, payload: buffer("raw"))])
    }

    @Test("The delegate may close from inside a message callback; later frames in the same read are ignored")
    func closeFromCallback() throws {
        let connection = try Connection()
        connection.delegate.onMessage = { handler, _ in handler.close(code: .normalClosure, reason: "done") }
        var wire = clientFrame(.text, "first")
        var second = clientFrame(.text, "second")
        wire.writeBuffer(&second)
        try connection.send(wire)
        #expect(connection.delegate.texts == ["first"])
        #expect(try connection.outboundFrames().map(\.opcode) == [.close])
    }
}
