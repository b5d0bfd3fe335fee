import CZlib
import NIOCore

/// Our side of permessage-deflate: compresses outgoing messages (RFC 7692 §7.2.1).
///
/// Raw deflate (negative `windowBits`, no zlib header), flushed with `Z_SYNC_FLUSH` at the end of every
/// message, and the trailing empty stored block `00 00 FF FF` stripped. With `server_no_context_takeover` the
/// stream is reset after each message (§7.1.1.1), otherwise the LZ77 window carries over.
///
/// Event-loop-bound, not Sendable. Owns a heap `z_stream` (zlib keeps pointers into it, so it must not move),
/// released by `deinit` or earlier by `release()`.
public final class PerMessageDeflater {
    private var stream: UnsafeMutablePointer<z_stream>?
    private let noContextTakeover: Bool

    /// `windowBits` 9...15, `memoryLevel` 1...9. `nil` when zlib cannot allocate the stream.
    public init?(windowBits: Int, memoryLevel: Int, level: Int, noContextTakeover: Bool) {
        let stream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
        stream.initialize(to: z_stream())
        let result = deflateInit2_(
            stream, Int32(min(max(level, -1), 9)), Z_DEFLATED, -Int32(min(max(windowBits, 9), 15)),
            Int32(min(max(memoryLevel, 1), 9)), Z_DEFAULT_STRATEGY, zlibVersion(),
            Int32(MemoryLayout<z_stream>.size)
        )
        guard result == Z_OK else {
            stream.deinitialize(count: 1)
            stream.deallocate()
            return nil
        }
        self.stream = stream
        self.noContextTakeover = noContextTakeover
    }

    deinit {
        self.release()
    }

    /// Frees zlib's memory now (idempotent); `compress` returns `nil` afterwards.
    public func release() {
        guard let stream = self.stream else { return }
        deflateEnd(stream)
        stream.deinitialize(count: 1)
        stream.deallocate()
        self.stream = nil
    }

    /// Compresses `prefix` + `payload` as one message. The result has `headroom` writable bytes before its
    /// reader index, so the frame header can be put in front without copying. `nil` on a zlib failure.
    public func compress(prefix: ByteBuffer?, payload: ByteBuffer, headroom: Int, allocator: ByteBufferAllocator) -> ByteBuffer? {
        guard let stream = self.stream else { return nil }
        let total = (prefix?.readableBytes ?? 0) + payload.readableBytes
        // deflateBound covers Z_FINISH; a sync flush adds a few bytes (empty stored block), hence the slack.
        let bound = Int(deflateBound(stream, uLong(total))) + 16
        var output = allocator.buffer(capacity: headroom + bound)
        output.moveWriterIndex(forwardBy: headroom)
        output.moveReaderIndex(forwardBy: headroom)
        if total == 0 {
            // RFC 7692 §7.2.3.6: an empty message compresses to one 0x00 octet (an empty stored block). Asking zlib
            // for a second sync flush with no input would give Z_BUF_ERROR and no bytes (found by Fuzz/FuzzDeflate).
            output.writeInteger(UInt8(0))
            return output
        }
        if let prefix, prefix.readableBytes > 0 {
            guard self.deflate(prefix, flush: Z_NO_FLUSH, stream: stream, into: &output) else { return nil }
        }
        guard self.deflate(payload, flush: Z_SYNC_FLUSH, stream: stream, into: &output) else { return nil }
        // RFC 7692 §7.2.1: remove the 4 octets 00 00 FF FF that end a sync-flushed stream.
        guard output.readableBytes >= 4,
            output.getInteger(at: output.writerIndex - 4, as: UInt32.self) == 0x0000_FFFF
        else { return nil }
        output.moveWriterIndex(to: output.writerIndex - 4)
        if self.noContextTakeover {
            deflateReset(stream)
        }
        return output
    }

    private func deflate(
        _ input: ByteBuffer,
        flush: Int32,
        stream: UnsafeMutablePointer<z_stream>,
        into output: inout ByteBuffer
    ) -> Bool {
        input.withUnsafeReadableBytes { source in
            stream.pointee.next_in = UnsafeMutablePointer(
                mutating: source.baseAddress?.assumingMemoryBound(to: Bytef.self)
            )
            stream.pointee.avail_in = uInt(source.count)
            defer {
                stream.pointee.next_in = nil
                stream.pointee.avail_in = 0
            }
            while true {
                var result: Int32 = Z_OK
                var outputFull = false
                output.writeWithUnsafeMutableBytes(minimumWritableBytes: 64) { destination in
                    let room = min(destination.count, Int(UInt32.max))
                    stream.pointee.next_out = destination.baseAddress!.assumingMemoryBound(to: Bytef.self)
                    stream.pointee.avail_out = uInt(room)
                    result = CZlib.deflate(stream, flush)
                    outputFull = stream.pointee.avail_out == 0
                    let written = room - Int(stream.pointee.avail_out)
                    stream.pointee.next_out = nil
                    stream.pointee.avail_out = 0
                    return written
                }
                // Z_BUF_ERROR only means "no progress possible", e.g. nothing left to do.
                guard result == Z_OK || result == Z_BUF_ERROR else { return false }
                // zlib: when avail_out is 0 after a flush, call again with more room; otherwise all input is in.
                if !outputFull && stream.pointee.avail_in == 0 { return true }
            }
        }
    }
}
