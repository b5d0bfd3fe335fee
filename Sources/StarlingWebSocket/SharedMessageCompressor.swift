import NIOCore

/// permessage-deflate for every connection of one event loop that negotiated `server_no_context_takeover`.
///
/// Without context takeover each message is compressed from a fresh state (RFC 7692 §7.1.1.1), so one zlib stream
/// per window size serves all of the loop's connections (no per-connection compressor memory), and a payload sent
/// to many connections (a fan-out) is compressed once: the last `cacheSize` results are kept and reused while the
/// same payload buffers come again. (Several, not one: a loop delivers a run of messages subscriber by subscriber,
/// so each subscriber asks for the run's payloads in turn.)
///
/// A message is `prefix` + `payload` where only the payload is shared; the prefix (a STOMP MESSAGE's
/// per-subscriber head) goes first as a DEFLATE *stored* block (RFC 1951 §3.2.4: `BFINAL=0 BTYPE=00`, byte
/// aligned, `LEN`, `NLEN`, the raw bytes), followed by the shared compressed payload. The payload was compressed
/// from a fresh state and starts at a byte boundary, so the concatenation is one valid DEFLATE stream, and its
/// back-references never reach before its own start.
///
/// Event-loop-bound: use it only on its loop. Not Sendable.
public final class SharedMessageCompressor {
    private let memoryLevel: Int
    private let level: Int
    private var deflaters: [Int: PerMessageDeflater] = [:]
    /// Recent results, a ring searched newest first.
    private var cache: [(payload: ByteBuffer, windowBits: Int, compressed: ByteBuffer)] = []
    private var nextSlot = 0
    /// Results kept: more than a loop's usual run of messages to one destination in one tick.
    public static let cacheSize = 256

    /// Longest prefix that fits one stored block.
    public static let maxStoredPrefix = 65_535

    public init(memoryLevel: Int = 8, level: Int = 6) {
        self.memoryLevel = memoryLevel
        self.level = level
    }

    /// `payload` compressed from a fresh state with a sync flush, without the trailing `00 00 FF FF`
    /// (RFC 7692 §7.2.1). `nil` on a zlib failure.
    public func compressedPayload(_ payload: ByteBuffer, windowBits: Int, allocator: ByteBufferAllocator) -> ByteBuffer? {
        var slot = self.nextSlot
        for _ in 0..<self.cache.count {
            slot = slot == 0 ? self.cache.count - 1 : slot - 1
            let entry = self.cache[slot]
            if entry.windowBits == windowBits, Self.sameBytes(entry.payload, payload) { return entry.compressed }
        }
        let bits = min(max(windowBits, 9), 15)
        let deflater: PerMessageDeflater
        if let existing = self.deflaters[bits] {
            deflater = existing
        } else {
            guard let created = PerMessageDeflater(
                windowBits: bits, memoryLevel: self.memoryLevel, level: self.level, noContextTakeover: true
            ) else { return nil }
            self.deflaters[bits] = created
            deflater = created
        }
        guard let compressed = deflater.compress(prefix: nil, payload: payload, headroom: 0, allocator: allocator) else {
            return nil
        }
        if self.cache.count < Self.cacheSize {
            self.cache.append((payload, windowBits, compressed))
            self.nextSlot = self.cache.count % Self.cacheSize
        } else {
            self.cache[self.nextSlot] = (payload, windowBits, compressed)
            self.nextSlot = (self.nextSlot + 1) % Self.cacheSize
        }
        return compressed
    }

    /// Writes `prefix` as one uncompressed DEFLATE block (RFC 1951 §3.2.4) that can precede a compressed payload.
    public static func writeStoredBlock(_ prefix: ByteBuffer, to buffer: inout ByteBuffer) {
        let length = UInt16(prefix.readableBytes)
        buffer.writeInteger(UInt8(0))  // BFINAL 0, BTYPE 00, padding to the byte boundary
        buffer.writeInteger(length, endianness: .little)
        buffer.writeInteger(~length, endianness: .little)
        buffer.writeImmutableBuffer(prefix)
    }

    /// Bytes a stored block adds in front of `prefixLength` bytes.
    public static let storedBlockOverhead = 5

    /// True when both buffers view the same bytes of the same storage (a fan-out passes one buffer around).
    private static func sameBytes(_ a: ByteBuffer, _ b: ByteBuffer) -> Bool {
        guard a.readableBytes == b.readableBytes else { return false }
        let first = a.withUnsafeReadableBytes { $0.baseAddress }
        let second = b.withUnsafeReadableBytes { $0.baseAddress }
        return first == second
    }
}

@available(*, unavailable)
extension SharedMessageCompressor: Sendable {}
