import NIOCore
import StarlingWebSocket

/// The client's permessage-deflate codec (RFC 7692 §7.2), one per connection, event-loop-bound.
///
/// Wraps StarlingWebSocket's `PerMessageDeflater`/`PerMessageInflater` with the client's side of the
/// negotiated parameters. Streams are created lazily: an idle connection with deflate negotiated costs no zlib
/// memory.
final class ClientDeflate {
    struct Parameters: Equatable {
        /// Our compressor resets after each message (`client_no_context_takeover`, §7.1.1.2).
        var clientNoContextTakeover = false
        /// The server resets after each message (`server_no_context_takeover`, §7.1.1.1).
        var serverNoContextTakeover = false
        /// Our compressor's window (`client_max_window_bits`, §7.1.2.2), 9...15.
        var clientMaxWindowBits = 15

        /// Parses the server's `Sec-WebSocket-Extensions` answer. nil when it names something other than
        /// permessage-deflate (the connection must then fail, RFC 6455 §9.1).
        static func parse(_ value: String) -> Parameters? {
            var parameters = Parameters()
            let items = value.split(separator: ";").map { $0.trimmingSpaces }
            guard items.first == "permessage-deflate" else { return nil }
            for item in items.dropFirst() {
                let pair = item.split(separator: "=", maxSplits: 1).map { $0.trimmingSpaces }
                switch pair[0] {
                case "client_no_context_takeover": parameters.clientNoContextTakeover = true
                case "server_no_context_takeover": parameters.serverNoContextTakeover = true
                case "client_max_window_bits":
                    if pair.count == 2, let bits = Int(pair[1].trimmingCharacters(in: "\"")) {
                        parameters.clientMaxWindowBits = min(max(bits, 9), 15)
                    }
                case "server_max_window_bits": break  // our inflater always uses 15, which reads any smaller window
                default: return nil
                }
            }
            return parameters
        }
    }

    private let parameters: Parameters
    private var deflater: PerMessageDeflater?
    private var inflater: PerMessageInflater?
    private let allocator = ByteBufferAllocator()

    init(parameters: Parameters) {
        self.parameters = parameters
    }

    /// Compresses one message's payload into `output`, without the `00 00 FF FF` tail.
    func compress(_ input: ByteBuffer, into output: inout ByteBuffer) -> Bool {
        if self.deflater == nil {
            self.deflater = PerMessageDeflater(
                windowBits: self.parameters.clientMaxWindowBits, memoryLevel: 8, level: 6,
                noContextTakeover: self.parameters.clientNoContextTakeover
            )
        }
        guard let compressed = self.deflater?.compress(prefix: nil, payload: input, headroom: 0, allocator: self.allocator) else {
            return false
        }
        output = compressed
        return true
    }

    /// Inflates one whole compressed message into `output` (cleared first), through the loop's `cache` when the
    /// server compresses each message from a fresh state. False on corrupt data.
    func decompress(_ input: ByteBuffer, into output: inout ByteBuffer, cache: InflateCache?) -> Bool {
        guard self.parameters.serverNoContextTakeover, let cache, let (prefix, rest) = InflateCache.split(input) else {
            return self.decompress(input, into: &output)
        }
        output.clear()
        output.writeImmutableBuffer(prefix)
        if cache.appendCached(rest, to: &output) { return true }
        guard self.decompress(input, into: &output) else { return false }
        // The full inflation must begin with the stored block's bytes; the rest of it is what the cache keeps.
        guard output.readableBytes >= prefix.readableBytes,
            output.readableBytesView.prefix(prefix.readableBytes).elementsEqual(prefix.readableBytesView)
        else { return true }
        cache.remember(rest, inflated: output.readableBytesView.dropFirst(prefix.readableBytes))
        return true
    }

    /// Inflates one whole compressed message into `output` (cleared first). False on corrupt data.
    func decompress(_ input: ByteBuffer, into output: inout ByteBuffer) -> Bool {
        if self.inflater == nil {
            // 15 bits reads any smaller window the server may use.
            self.inflater = PerMessageInflater(windowBits: 15, noContextTakeover: self.parameters.serverNoContextTakeover)
        }
        guard let inflater = self.inflater else { return false }
        output.clear()
        do {
            try inflater.inflate(input, into: &output, limit: Int.max)
            try inflater.finishMessage(into: &output, limit: Int.max)
            return true
        } catch {
            return false
        }
    }
}

extension Substring {
    var trimmingSpaces: Substring { self.trimmingCharacters(in: " \t") }

    func trimmingCharacters(in set: String) -> Substring {
        var slice = self
        while let first = slice.first, set.contains(first) { slice.removeFirst() }
        while let last = slice.last, set.contains(last) { slice.removeLast() }
        return slice
    }
}
