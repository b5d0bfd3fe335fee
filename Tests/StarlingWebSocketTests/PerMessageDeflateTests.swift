import NIOCore
import Testing

@testable import StarlingWebSocket

@Suite("permessage-deflate compression (RFC 7692 §7.2)")
struct PerMessageDeflateTests {
    static let text = String(repeating: "MESSAGE\ndestination:/topic/prices.ACME\n\n{\"bid\":101.25,\"ask\":101.5}\n", count: 4)

    func deflater(windowBits: Int = 15, noContextTakeover: Bool = false) throws -> PerMessageDeflater {
        try #require(PerMessageDeflater(windowBits: windowBits, memoryLevel: 8, level: 6, noContextTakeover: noContextTakeover))
    }

    func inflater(windowBits: Int = 15, noContextTakeover: Bool = false) throws -> PerMessageInflater {
        try #require(PerMessageInflater(windowBits: windowBits, noContextTakeover: noContextTakeover))
    }

    func compress(_ deflater: PerMessageDeflater, _ text: String) throws -> ByteBuffer {
        try #require(deflater.compress(prefix: nil, payload: buffer(text), headroom: 0, allocator: ByteBufferAllocator()))
    }

    func inflate(_ inflater: PerMessageInflater, _ data: ByteBuffer, limit: Int = 1 << 20) throws -> String {
        var output = ByteBuffer()
        try inflater.inflate(data, into: &output, limit: limit)
        try inflater.finishMessage(into: &output, limit: limit)
        return String(buffer: output)
    }

    @Test("The RFC 7692 §7.2.3.1 and §7.2.3.2 examples inflate, the second using the first's context")
    func rfcExamples() throws {
        let inflater = try self.inflater()
        #expect(try self.inflate(inflater, buffer([0xF2, 0x48, 0xCD, 0xC9, 0xC9, 0x07, 0x00])) == "Hello")
        #expect(try self.inflate(inflater, buffer([0xF2, 0x00, 0x11, 0x00, 0x00])) == "Hello")
    }

    @Test("Compressing Hello twice gives the RFC 7692 bytes, with and without context takeover")
    func compressorMatchesRFC() throws {
        let takeover = try self.deflater()
        #expect(Array(try self.compress(takeover, "Hello").readableBytesView) == [0xF2, 0x48, 0xCD, 0xC9, 0xC9, 0x07, 0x00])
        #expect(Array(try self.compress(takeover, "Hello").readableBytesView) == [0xF2, 0x00, 0x11, 0x00, 0x00])
        let reset = try self.deflater(noContextTakeover: true)
        #expect(try self.compress(reset, "Hello") == self.compress(reset, "Hello"))
    }

    @Test("Deflater and inflater round-trip with every window size and context mode", arguments: [9, 12, 15])
    func roundTrip(windowBits: Int) throws {
        for noContextTakeover in [false, true] {
            let deflater = try self.deflater(windowBits: windowBits, noContextTakeover: noContextTakeover)
            let inflater = try self.inflater(windowBits: windowBits, noContextTakeover: noContextTakeover)
            for index in 0..<3 {
                let message = Self.text + String(index) + String(repeating: "z", count: 2000 * index)
                #expect(try self.inflate(inflater, self.compress(deflater, message)) == message)
            }
        }
    }

    @Test("An empty message compresses to one 00 octet, also right after another message with context takeover (fuzz finding)")
    func emptyMessage() throws {
        for noContextTakeover in [false, true] {
            let deflater = try self.deflater(noContextTakeover: noContextTakeover)
            let inflater = try self.inflater(noContextTakeover: noContextTakeover)
            for message in ["", "", Self.text, "", Self.text] {
                let compressed = try self.compress(deflater, message)
                if message.isEmpty { #expect(Array(compressed.readableBytesView) == [0x00]) }
                #expect(try self.inflate(inflater, compressed) == message)
            }
        }
    }

    @Test("The prefix and payload are compressed as one message")
    func prefixAndPayload() throws {
        let deflater = try self.deflater()
        let compressed = try #require(deflater.compress(
            prefix: buffer("head:"), payload: buffer("body"), headroom: 10, allocator: ByteBufferAllocator()
        ))
        #expect(compressed.readerIndex == 10, "headroom for the frame header")
        #expect(try self.inflate(self.inflater(), compressed) == "head:body")
    }

    @Test("Inflation stops at the limit: a decompression bomb fails without allocating past the cap")
    func bombIsCapped() throws {
        let bomb = try #require(self.deflater().compress(
            prefix: nil, payload: ByteBuffer(repeating: 0, count: 4 << 20), headroom: 0, allocator: ByteBufferAllocator()
        ))
        #expect(bomb.readableBytes < 8 << 10)
        var output = ByteBuffer()
        #expect(throws: WebSocketProtocolError.messageTooLarge(limit: 65536)) {
            try self.inflater().inflate(bomb, into: &output, limit: 65536)
        }
        #expect(output.readableBytes == 65536)
        #expect(output.capacity <= 65536)
        // Exactly at the limit is fine.
        var exact = ByteBuffer()
        let fits = try #require(self.deflater().compress(
            prefix: nil, payload: ByteBuffer(repeating: 7, count: 65536), headroom: 0, allocator: ByteBufferAllocator()
        ))
        let inflater = try self.inflater()
        try inflater.inflate(fits, into: &exact, limit: 65536)
        try inflater.finishMessage(into: &exact, limit: 65536)
        #expect(exact.readableBytes == 65536)
    }

    @Test("Corrupt compressed data is rejected")
    func corruptData() throws {
        var output = ByteBuffer()
        #expect(throws: WebSocketProtocolError.invalidCompressedData) {
            try self.inflater().inflate(buffer([0xFF, 0xFF, 0xFF, 0xFF]), into: &output, limit: 1000)
        }
    }
}

@Suite("permessage-deflate through the connection handler")
struct PerMessageDeflateHandlerTests {
    func compressedFrames(_ message: String, deflater: PerMessageDeflater, fragments: Int = 1) throws -> ByteBuffer {
        var compressed = try #require(deflater.compress(prefix: nil, payload: buffer(message), headroom: 0, allocator: ByteBufferAllocator()))
        var wire = ByteBuffer()
        let size = (compressed.readableBytes + fragments - 1) / fragments
        for index in 0..<fragments {
            let part = compressed.readSlice(length: min(size, compressed.readableBytes))!
            var frame = clientFrame(index == 0 ? .text : .continuation, part, fin: index == fragments - 1, rsv1: index == 0)
            wire.writeBuffer(&frame)
        }
        return wire
    }

    @Test("Compressed client messages are inflated, with and without client context takeover, whole and fragmented")
    func inboundCompressed() throws {
        for noContextTakeover in [false, true] {
            let connection = try Connection(deflate: NegotiatedDeflate(clientNoContextTakeover: noContextTakeover))
            let client = try #require(PerMessageDeflater(windowBits: 15, memoryLevel: 8, level: 6, noContextTakeover: noContextTakeover))
            try connection.send(self.compressedFrames(PerMessageDeflateTests.text, deflater: client))
            try connection.send(self.compressedFrames(PerMessageDeflateTests.text, deflater: client, fragments: 3))
            try connection.send(clientFrame(.text, "plain"))  // RSV1 clear: not compressed
            #expect(connection.delegate.texts == [PerMessageDeflateTests.text, PerMessageDeflateTests.text, "plain"])
            #expect(connection.channel.isActive)
        }
    }

    @Test("Large outgoing messages are compressed with RSV1, tiny ones are not, and context carries over")
    func outboundCompressed() throws {
        let connection = try Connection(deflate: NegotiatedDeflate())
        let message = String(PerMessageDeflateTests.text.dropFirst(8))
        for _ in 0..<2 {
            connection.handler.sendMessage(prefix: buffer("MESSAGE\n"), payload: buffer(message), isText: true)
        }
        connection.handler.sendMessage(prefix: nil, payload: buffer("tiny"), isText: true)
        connection.handler.flush()
        let frames = try connection.outboundFrames()
        #expect(frames.map(\.rsv1) == [true, true, false])
        #expect(frames.map(\.fin) == [true, true, true])
        #expect(frames[1].payload.readableBytes < frames[0].payload.readableBytes, "the second message reuses the window")
        let inflater = try #require(PerMessageInflater(windowBits: 15, noContextTakeover: false))
        for frame in frames.prefix(2) {
            var output = ByteBuffer()
            try inflater.inflate(frame.payload, into: &output, limit: 1 << 20)
            try inflater.finishMessage(into: &output, limit: 1 << 20)
            #expect(String(buffer: output) == "MESSAGE\n" + message)
        }
        #expect(String(buffer: frames[2].payload) == "tiny")
    }

    @Test("With server_no_context_takeover every message compresses alone")
    func outboundNoContextTakeover() throws {
        var configuration = WebSocketConfiguration()
        configuration.deflate?.minimumSizeToCompress = 16
        let connection = try Connection(
            configuration: configuration, deflate: NegotiatedDeflate(serverNoContextTakeover: true, serverMaxWindowBits: 9)
        )
        for _ in 0..<2 {
            connection.handler.sendMessage(prefix: nil, payload: buffer(PerMessageDeflateTests.text), isText: false)
        }
        connection.handler.flush()
        let frames = try connection.outboundFrames()
        #expect(frames.map(\.rsv1) == [true, true])
        #expect(frames[0].payload == frames[1].payload)
        for frame in frames {
            let fresh = try #require(PerMessageInflater(windowBits: 9, noContextTakeover: true))
            var output = ByteBuffer()
            try fresh.inflate(frame.payload, into: &output, limit: 1 << 20)
            try fresh.finishMessage(into: &output, limit: 1 << 20)
            #expect(String(buffer: output) == PerMessageDeflateTests.text)
        }
    }

    @Test("A decompression bomb closes with 1009")
    func bomb() throws {
        var configuration = WebSocketConfiguration()
        configuration.maxMessageSize = 64 << 10
        let connection = try Connection(configuration: configuration, deflate: NegotiatedDeflate())
        let client = try #require(PerMessageDeflater(windowBits: 15, memoryLevel: 8, level: 9, noContextTakeover: false))
        let bomb = try #require(client.compress(
            prefix: nil, payload: ByteBuffer(repeating: 0x61, count: 4 << 20), headroom: 0, allocator: ByteBufferAllocator()
        ))
        try connection.send(clientFrame(.binary, bomb, rsv1: true))
        let frames = try connection.outboundFrames()
        #expect(frames.map(\.closeCode) == [1009])
        #expect(connection.delegate.closeCodes == [.messageTooBig])
        #expect(connection.delegate.messages.isEmpty)
    }

    @Test("Compressed text that inflates to invalid UTF-8, or does not inflate, closes with 1007")
    func invalidCompressedContent() throws {
        let client = try #require(PerMessageDeflater(windowBits: 15, memoryLevel: 8, level: 6, noContextTakeover: true))
        let badText = try #require(client.compress(prefix: nil, payload: buffer([0x61, 0xFF]), headroom: 0, allocator: ByteBufferAllocator()))
        for payload in [badText, buffer([0xFF, 0xFF, 0xFF])] {
            let connection = try Connection(deflate: NegotiatedDeflate())
            try connection.send(clientFrame(.text, payload, rsv1: true))
            #expect(try connection.outboundFrames().map(\.closeCode) == [1007])
            #expect(connection.delegate.closeCodes == [.invalidPayload])
        }
    }
}
