import NIOCore
import Testing

@testable import StarlingWebSocket

@Suite("Shared per-loop compression (server_no_context_takeover)")
struct SharedMessageCompressorTests {
    static let payload = String(repeating: "destination:/topic/prices.ACME\nmessage-id:1\n\n{\"bid\":101.25,\"ask\":101.5}", count: 3) + "\0"

    private func inflate(_ data: ByteBuffer, windowBits: Int = 15) throws -> String {
        let inflater = try #require(PerMessageInflater(windowBits: windowBits, noContextTakeover: true))
        var output = ByteBuffer()
        try inflater.inflate(data, into: &output, limit: 1 << 20)
        try inflater.finishMessage(into: &output, limit: 1 << 20)
        return String(buffer: output)
    }

    @Test("A stored-block prefix followed by the shared compressed payload inflates to prefix + payload")
    func storedPrefix() throws {
        let compressor = SharedMessageCompressor()
        let payload = buffer(Self.payload)
        let compressed = try #require(compressor.compressedPayload(payload, windowBits: 15, allocator: .init()))
        for prefix in ["", "MESSAGE\nsubscription:7\n", String(repeating: "p", count: 300)] {
            var message = ByteBuffer()
            if !prefix.isEmpty { SharedMessageCompressor.writeStoredBlock(buffer(prefix), to: &message) }
            message.writeImmutableBuffer(compressed)
            #expect(try self.inflate(message) == prefix + Self.payload)
        }
    }

    @Test("The same payload buffer is compressed once; other bytes or another window size are compressed anew")
    func cache() throws {
        let compressor = SharedMessageCompressor()
        let payload = buffer(Self.payload)
        let first = try #require(compressor.compressedPayload(payload, windowBits: 15, allocator: .init()))
        let again = try #require(compressor.compressedPayload(payload, windowBits: 15, allocator: .init()))
        #expect(first.withUnsafeReadableBytes { $0.baseAddress } == again.withUnsafeReadableBytes { $0.baseAddress })
        let copy = buffer(Self.payload)  // equal bytes, other storage
        let fresh = try #require(compressor.compressedPayload(copy, windowBits: 15, allocator: .init()))
        #expect(fresh.withUnsafeReadableBytes { $0.baseAddress } != first.withUnsafeReadableBytes { $0.baseAddress })
        #expect(fresh == first)  // no context carried over: the same bytes compress the same way
        let small = try #require(compressor.compressedPayload(copy, windowBits: 9, allocator: .init()))
        #expect(try self.inflate(small, windowBits: 9) == Self.payload)
    }

    @Test("Payloads asked for in turn (a run delivered subscriber by subscriber) are each compressed once")
    func interleaved() throws {
        let compressor = SharedMessageCompressor()
        let payloads = (0..<5).map { buffer(Self.payload + "\($0)") }
        var first: [UnsafeRawPointer?] = []
        for payload in payloads {
            let compressed = try #require(compressor.compressedPayload(payload, windowBits: 15, allocator: .init()))
            first.append(compressed.withUnsafeReadableBytes { $0.baseAddress })
        }
        for _ in 0..<3 {
            for (index, payload) in payloads.enumerated() {
                let again = try #require(compressor.compressedPayload(payload, windowBits: 15, allocator: .init()))
                #expect(again.withUnsafeReadableBytes { $0.baseAddress } == first[index])
            }
        }
    }

    @Test("Connections sharing a loop's compressor send one compressed payload, each with its own prefix")
    func throughHandlers() throws {
        var configuration = WebSocketConfiguration()
        configuration.deflate?.minimumSizeToCompress = 16
        let shared = SharedMessageCompressor()
        let deflate = NegotiatedDeflate(serverNoContextTakeover: true)
        let connections = try (0..<2).map { _ in try Connection(configuration: configuration, deflate: deflate, sharedCompressor: shared) }
        let payload = buffer(Self.payload)
        for (index, connection) in connections.enumerated() {
            connection.handler.sendMessage(prefix: buffer("MESSAGE\nsubscription:\(index)\n"), payload: payload, isText: true)
            connection.handler.flush()
        }
        // The compressed payload was made once (see `cache`); each connection copied it into its batch behind its
        // own frame header and stored prefix.
        let compressed = try #require(shared.compressedPayload(payload, windowBits: 15, allocator: .init()))
        for (index, connection) in connections.enumerated() {
            let parts = try connection.outboundBuffers()
            #expect(parts.count == 1)
            #expect(parts[0].readableBytesView.suffix(compressed.readableBytes).elementsEqual(compressed.readableBytesView))
            var all = ByteBuffer()
            for var part in parts { all.writeBuffer(&part) }
            var parser = WebSocketFrameParser(expectMasked: false, allowCompressionBit: true)
            let frame = try #require(try parser.next(&all))
            #expect(frame.rsv1 && frame.fin && frame.opcode == .text)
            #expect(try self.inflate(frame.payload) == "MESSAGE\nsubscription:\(index)\n" + Self.payload)
        }
    }

    @Test("With context takeover negotiated the connection keeps its own compressor, not the shared one")
    func contextTakeoverIsNotShared() throws {
        var configuration = WebSocketConfiguration()
        configuration.deflate?.minimumSizeToCompress = 16
        let shared = SharedMessageCompressor()
        let connection = try Connection(configuration: configuration, deflate: NegotiatedDeflate(), sharedCompressor: shared)
        connection.handler.sendMessage(prefix: buffer("MESSAGE\n"), payload: buffer(Self.payload), isText: true)
        connection.handler.flush()
        let parts = try connection.outboundBuffers()
        #expect(parts.count == 1)  // one buffer: header + prefix and payload compressed together
    }
}
