import NIOCore

/// Writes frame headers (RFC 6455 §5.2) and applies client masking (§5.3).
///
/// The server uses it for unmasked frames; clients written by the project (tests, load generator) pass a
/// masking key. Header layout:
///
///     byte 0: FIN RSV1 RSV2 RSV3 opcode(4)
///     byte 1: MASK len7             len7 < 126: the length; 126: 16-bit length follows; 127: 64-bit length follows
///     [2 or 8 bytes extended length, network byte order] [4 bytes masking key when MASK]
public enum WebSocketFrameEncoder {
    /// The largest header: 2 + 8 bytes of length + 4 bytes of masking key.
    public static let maximumHeaderLength = 14

    /// The number of header bytes for a frame with this payload length.
    @inlinable
    public static func headerLength(payloadLength: Int, masked: Bool) -> Int {
        let lengthBytes: Int
        if payloadLength < 126 {
            lengthBytes = 0
        } else if payloadLength <= Int(UInt16.max) {
            lengthBytes = 2
        } else {
            lengthBytes = 8
        }
        return 2 + lengthBytes + (masked ? 4 : 0)
    }

    /// Appends a frame header to `buffer`. The payload (masked by the caller when `maskingKey` is given, see
    /// `mask(_:key:)`) must follow it.
    public static func writeFrameHeader(
        opcode: WebSocketOpcode,
        fin: Bool,
        rsv1: Bool,
        payloadLength: Int,
        maskingKey: (UInt8, UInt8, UInt8, UInt8)?,
        to buffer: inout ByteBuffer
    ) {
        precondition(payloadLength >= 0, "negative payload length")
        let length = self.headerLength(payloadLength: payloadLength, masked: maskingKey != nil)
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: length) { pointer in
            self.storeHeader(
                opcode: opcode, fin: fin, rsv1: rsv1, payloadLength: payloadLength, maskingKey: maskingKey,
                to: pointer.baseAddress!
            )
        }
    }

    /// Writes a header for a server frame (unmasked) into the `length` bytes that precede the reader index of
    /// `buffer` (reserved headroom) and moves the reader index back over it. Returns `false` when the headroom
    /// is too small.
    static func prependFrameHeader(
        opcode: WebSocketOpcode,
        fin: Bool,
        rsv1: Bool,
        to buffer: inout ByteBuffer
    ) -> Bool {
        let payloadLength = buffer.readableBytes
        let length = self.headerLength(payloadLength: payloadLength, masked: false)
        let start = buffer.readerIndex - length
        guard start >= 0 else { return false }
        buffer.moveReaderIndex(to: start)
        buffer.withUnsafeMutableReadableBytes { pointer in
            _ = self.storeHeader(
                opcode: opcode, fin: fin, rsv1: rsv1, payloadLength: payloadLength, maskingKey: nil,
                to: pointer.baseAddress!
            )
        }
        return true
    }

    /// Masks (or unmasks: the transform is its own inverse) the readable bytes of `buffer` in place.
    public static func mask(_ buffer: inout ByteBuffer, key: (UInt8, UInt8, UInt8, UInt8)) {
        buffer.withUnsafeMutableReadableBytes { bytes in
            guard let base = bytes.baseAddress else { return }
            WebSocketMasking.apply(
                key: key, offset: 0, source: UnsafeRawBufferPointer(bytes), destination: base
            )
        }
    }

    /// Appends a whole frame: header, then `payload` (masked when `maskingKey` is given). For clients and tests.
    public static func writeFrame(
        opcode: WebSocketOpcode,
        fin: Bool = true,
        rsv1: Bool = false,
        payload: ByteBuffer,
        maskingKey: (UInt8, UInt8, UInt8, UInt8)?,
        to buffer: inout ByteBuffer
    ) {
        self.writeFrameHeader(
            opcode: opcode, fin: fin, rsv1: rsv1, payloadLength: payload.readableBytes, maskingKey: maskingKey,
            to: &buffer
        )
        guard let key = maskingKey else {
            buffer.writeImmutableBuffer(payload)
            return
        }
        payload.withUnsafeReadableBytes { source in
            _ = buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: source.count) { destination in
                if let base = destination.baseAddress {
                    WebSocketMasking.apply(key: key, offset: 0, source: source, destination: base)
                }
                return source.count
            }
        }
    }

    /// Stores the header at `pointer`, returning its length.
    @inline(__always)
    private static func storeHeader(
        opcode: WebSocketOpcode,
        fin: Bool,
        rsv1: Bool,
        payloadLength: Int,
        maskingKey: (UInt8, UInt8, UInt8, UInt8)?,
        to pointer: UnsafeMutableRawPointer
    ) -> Int {
        pointer.storeBytes(
            of: (fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | opcode.rawValue, toByteOffset: 0, as: UInt8.self
        )
        let maskBit: UInt8 = maskingKey == nil ? 0 : 0x80
        var index = 2
        if payloadLength < 126 {
            pointer.storeBytes(of: maskBit | UInt8(payloadLength), toByteOffset: 1, as: UInt8.self)
        } else if payloadLength <= Int(UInt16.max) {
            pointer.storeBytes(of: maskBit | 126, toByteOffset: 1, as: UInt8.self)
            pointer.storeBytes(of: UInt16(payloadLength).bigEndian, toByteOffset: 2, as: UInt16.self)
            index = 4
        } else {
            pointer.storeBytes(of: maskBit | 127, toByteOffset: 1, as: UInt8.self)
            pointer.storeBytes(of: UInt64(payloadLength).bigEndian, toByteOffset: 2, as: UInt64.self)
            index = 10
        }
        if let key = maskingKey {
            withUnsafeBytes(of: key) { keyBytes in
                (pointer + index).copyMemory(from: keyBytes.baseAddress!, byteCount: 4)
            }
            index += 4
        }
        return index
    }
}
