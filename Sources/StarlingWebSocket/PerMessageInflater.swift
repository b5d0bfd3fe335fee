import CZlib
import NIOCore

/// The receiving side of permessage-deflate: inflates incoming messages (RFC 7692 §7.2.2).
///
/// Frames of a compressed message are fed in order with `inflate(_:into:limit:)`, then `finishMessage` appends
/// the `00 00 FF FF` that the sender stripped. Output never grows past `limit`: inflation stops, and
/// `.messageTooLarge` is thrown, as soon as one more byte than the limit would be produced, so a decompression
/// bomb costs at most about `limit` bytes of memory. With `client_no_context_takeover` (or when the client
/// ended its deflate stream with BFINAL) the stream is reset after the message (§7.2.3.1, §7.1.1.2).
///
/// Event-loop-bound, not Sendable; `release()` or `deinit` frees zlib's memory.
public final class PerMessageInflater {
    private var stream: UnsafeMutablePointer<z_stream>?
    private let noContextTakeover: Bool
    /// The client finished its deflate stream (BFINAL block); the rest of the message is ignored.
    private var streamEnded = false

    /// `windowBits` 8...15; used as at least 9 (see `NegotiatedDeflate.clientMaxWindowBits`).
    public init?(windowBits: Int, noContextTakeover: Bool) {
        let stream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
        stream.initialize(to: z_stream())
        let result = inflateInit2_(
            stream, -Int32(min(max(windowBits, 9), 15)), zlibVersion(), Int32(MemoryLayout<z_stream>.size)
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

    public func release() {
        guard let stream = self.stream else { return }
        inflateEnd(stream)
        stream.deinitialize(count: 1)
        stream.deallocate()
        self.stream = nil
    }

    /// Inflates one frame's compressed payload, appending to `output` (whose readable bytes count against
    /// `limit`).
    public func inflate(_ input: ByteBuffer, into output: inout ByteBuffer, limit: Int) throws(WebSocketProtocolError) {
        try input.withUnsafeReadableBytes { (bytes) throws(WebSocketProtocolError) in
            try self.inflate(bytes, into: &output, limit: limit)
        }
    }

    /// Ends the message: feeds the stripped `00 00 FF FF` (RFC 7692 §7.2.2) and resets when required.
    public func finishMessage(into output: inout ByteBuffer, limit: Int) throws(WebSocketProtocolError) {
        let tail: (UInt8, UInt8, UInt8, UInt8) = (0x00, 0x00, 0xFF, 0xFF)
        try withUnsafeBytes(of: tail) { (bytes) throws(WebSocketProtocolError) in
            try self.inflate(bytes, into: &output, limit: limit)
        }
        if self.noContextTakeover || self.streamEnded, let stream = self.stream {
            inflateReset(stream)
            self.streamEnded = false
        }
    }

    private func inflate(
        _ input: UnsafeRawBufferPointer,
        into output: inout ByteBuffer,
        limit: Int
    ) throws(WebSocketProtocolError) {
        guard let stream = self.stream else { throw .invalidCompressedData }
        guard !self.streamEnded, input.count > 0 else { return }
        stream.pointee.next_in = UnsafeMutablePointer(mutating: input.baseAddress!.assumingMemoryBound(to: Bytef.self))
        stream.pointee.avail_in = uInt(input.count)
        defer {
            stream.pointee.next_in = nil
            stream.pointee.avail_in = 0
            stream.pointee.next_out = nil
            stream.pointee.avail_out = 0
        }
        while true {
            let room = limit - output.readableBytes
            var result: Int32
            var outputLeft: uInt
            if room <= 0 {
                // At the cap: probe with one byte on the stack whether the message has more to give.
                var probe: UInt8 = 0
                (result, outputLeft) = withUnsafeMutablePointer(to: &probe) { pointer in
                    stream.pointee.next_out = pointer
                    stream.pointee.avail_out = 1
                    let result = CZlib.inflate(stream, Z_SYNC_FLUSH)
                    return (result, stream.pointee.avail_out)
                }
                if outputLeft == 0 { throw .messageTooLarge(limit: limit) }
            } else {
                // Grow geometrically (at least 4 KiB at a time) but never past the cap.
                let chunk = min(room, max(output.writableBytes, 4096, output.readableBytes))
                result = Z_OK
                outputLeft = 0
                output.writeWithUnsafeMutableBytes(minimumWritableBytes: chunk) { destination in
                    stream.pointee.next_out = destination.baseAddress!.assumingMemoryBound(to: Bytef.self)
                    stream.pointee.avail_out = uInt(chunk)
                    result = CZlib.inflate(stream, Z_SYNC_FLUSH)
                    outputLeft = stream.pointee.avail_out
                    return chunk - Int(outputLeft)
                }
            }
            switch result {
            case Z_OK:
                // Output room left over means zlib used all the input it could.
                if outputLeft > 0 { return }
            case Z_BUF_ERROR:
                return  // no progress possible: input used up
            case Z_STREAM_END:
                self.streamEnded = true
                return
            default:
                throw .invalidCompressedData  // Z_DATA_ERROR, Z_NEED_DICT, Z_MEM_ERROR, Z_STREAM_ERROR
            }
        }
    }
}
