import NIOCore
import StarlingWebSocket
import Testing
@testable import StarlingLoadtestKit

@Suite("InflateCache")
struct InflateCacheTests {
    /// A message as Starling sends it: the prefix as a stored block, then the payload compressed from a fresh state.
    private func message(prefix: String, payload: ByteBuffer, compressor: SharedMessageCompressor) throws -> ByteBuffer {
        let compressed = try #require(compressor.compressedPayload(payload, windowBits: 15, allocator: .init()))
        var message = ByteBuffer()
        SharedMessageCompressor.writeStoredBlock(ByteBuffer(string: prefix), to: &message)
        message.writeImmutableBuffer(compressed)
        return message
    }

    @Test("The same compressed payload behind different prefixes is inflated once, with the right bytes each time")
    func sharedPayload() throws {
        var parameters = ClientDeflate.Parameters()
        parameters.serverNoContextTakeover = true
        let cache = InflateCache()
        let compressor = SharedMessageCompressor()
        let payload = ByteBuffer(string: String(repeating: "destination:/topic/x\nbody ", count: 10))
        let plain = ClientDeflate(parameters: parameters)
        for subscriber in 0..<3 {
            let prefix = "MESSAGE\nsubscription:\(subscriber)\n"
            let message = try self.message(prefix: prefix, payload: payload, compressor: compressor)
            let deflate = ClientDeflate(parameters: parameters)
            var viaCache = ByteBuffer()
            #expect(deflate.decompress(message, into: &viaCache, cache: cache))
            var direct = ByteBuffer()
            #expect(plain.decompress(message, into: &direct))
            #expect(viaCache == direct)
            #expect(String(buffer: viaCache) == prefix + String(buffer: payload))
        }
        #expect(cache.misses == 1 && cache.hits == 2)
    }

    @Test("Messages without a leading stored block are inflated in full")
    func otherShapes() throws {
        var parameters = ClientDeflate.Parameters()
        parameters.serverNoContextTakeover = true
        let deflater = try #require(PerMessageDeflater(windowBits: 15, memoryLevel: 8, level: 6, noContextTakeover: true))
        let whole = try #require(deflater.compress(prefix: nil, payload: ByteBuffer(string: "hello hello hello"), headroom: 0, allocator: .init()))
        #expect(InflateCache.split(whole) == nil)
        let cache = InflateCache()
        var output = ByteBuffer()
        #expect(ClientDeflate(parameters: parameters).decompress(whole, into: &output, cache: cache))
        #expect(String(buffer: output) == "hello hello hello")
        #expect(cache.hits == 0)
    }
}
