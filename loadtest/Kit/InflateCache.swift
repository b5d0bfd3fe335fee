import NIOCore
import StarlingWebSocket

/// Inflated payloads shared by the connections of one event loop of the load generator.
///
/// A fan-out server that answers `server_no_context_takeover` can compress a message once and send every
/// subscriber the same compressed bytes behind a per-subscriber DEFLATE stored block (Starling does). Inflating
/// those bytes a thousand times is what limits the load generator then, not the server. This cache inflates each
/// distinct compressed payload once per loop: a message that starts with a stored block has that block copied out,
/// and the rest is looked up by its bytes (compared in full, not only by hash).
///
/// It only caches what it proved standalone: on a miss the whole message is inflated as usual, and the rest is
/// also inflated alone from a fresh state; the entry is kept only if both give the same bytes (a stream whose later
/// blocks refer back into the stored block is inflated in full every time). Event-loop-bound.
final class InflateCache {
    private struct Entry {
        let compressed: [UInt8]
        let inflated: [UInt8]
    }

    private var entries: [Int: Entry] = [:]
    private let standalone: PerMessageInflater?
    private var scratch = ByteBuffer()
    static let capacity = 4096
    private(set) var hits = 0
    private(set) var misses = 0

    init() {
        self.standalone = PerMessageInflater(windowBits: 15, noContextTakeover: true)
    }

    /// `input` split as a leading stored block's bytes and the rest, when it has that shape.
    static func split(_ input: ByteBuffer) -> (prefix: ByteBuffer, rest: ByteBuffer)? {
        guard input.readableBytes >= 5, input.getInteger(at: input.readerIndex, as: UInt8.self) == 0,
            let length = input.getInteger(at: input.readerIndex + 1, endianness: .little, as: UInt16.self),
            let check = input.getInteger(at: input.readerIndex + 3, endianness: .little, as: UInt16.self),
            check == ~length, input.readableBytes > 5 + Int(length),
            let prefix = input.getSlice(at: input.readerIndex + 5, length: Int(length)),
            let rest = input.getSlice(at: input.readerIndex + 5 + Int(length), length: input.readableBytes - 5 - Int(length))
        else { return nil }
        return (prefix, rest)
    }

    /// Appends the cached inflation of `rest` to `output`; false on a miss.
    func appendCached(_ rest: ByteBuffer, to output: inout ByteBuffer) -> Bool {
        let key = Self.hash(rest)
        guard let entry = self.entries[key], rest.readableBytesView.elementsEqual(entry.compressed) else {
            self.misses += 1
            return false
        }
        self.hits += 1
        output.writeBytes(entry.inflated)
        return true
    }

    /// After a miss: `inflated` is the rest's part of the fully inflated message; keep it if inflating the rest
    /// alone gives the same bytes.
    func remember(_ rest: ByteBuffer, inflated: ByteBufferView) {
        guard let standalone = self.standalone else { return }
        self.scratch.clear()
        do {
            try standalone.inflate(rest, into: &self.scratch, limit: 1 << 24)
            try standalone.finishMessage(into: &self.scratch, limit: 1 << 24)
        } catch {
            return
        }
        guard self.scratch.readableBytesView.elementsEqual(inflated) else { return }
        if self.entries.count >= Self.capacity { self.entries.removeAll(keepingCapacity: true) }
        self.entries[Self.hash(rest)] = Entry(compressed: Array(rest.readableBytesView), inflated: Array(inflated))
    }

    private static func hash(_ buffer: ByteBuffer) -> Int {
        var hasher = Hasher()
        buffer.withUnsafeReadableBytes { hasher.combine(bytes: $0) }
        return hasher.finalize()
    }
}
