import NIOCore

/// An incremental, resumable WebSocket frame parser (RFC 6455 §5.2).
///
/// Grammar of one frame:
///
///     frame   = byte0 byte1 [ext-len] [masking-key] payload
///     byte0   = FIN(1) RSV1(1) RSV2(1) RSV3(1) opcode(4)
///     byte1   = MASK(1) len7(7)
///     ext-len = 2 bytes (len7 = 126) / 8 bytes, MSB 0 (len7 = 127), network byte order
///     masking-key = 4 bytes, present iff MASK
///
/// Feed it whatever bytes arrived (`next(_:)` consumes from the buffer and keeps the rest of a split frame
/// internally, so the caller never has to accumulate); call `next` again until it returns `nil`.
///
/// Everything that can be judged from one frame is checked here, from the header alone and before any payload
/// is buffered: masking (§5.1), RSV bits (§5.2, RFC 7692 §6.1), reserved opcodes, control frames that are
/// fragmented or longer than 125 bytes (§5.5), the 64-bit length MSB, and `maxFrameSize`. Rules that need the
/// message context (continuations, close payloads, UTF-8) live in `WebSocketConnectionStateMachine`.
///
/// Allocation: a masked payload that arrived whole is unmasked while it is copied out of the input into a
/// buffer of exactly its length (one allocation per frame, the payload itself); one that arrives in pieces
/// grows with the bytes received. An unmasked payload that arrived whole is a zero-copy slice of the input.
/// A header split across reads goes through a small reused buffer.
public struct WebSocketFrameParser {
    /// Payloads longer than this fail with `.frameTooLarge`.
    public let maxFrameSize: Int
    /// `true` on a server (client frames must be masked), `false` when parsing a server's frames.
    public let expectMasked: Bool
    /// `true` once permessage-deflate was negotiated: RSV1 is then allowed on text/binary frames.
    public var allowCompressionBit: Bool

    private struct Header {
        var fin: Bool
        var rsv1: Bool
        var opcode: WebSocketOpcode
        var length: Int
        var maskingKey: (UInt8, UInt8, UInt8, UInt8)?
    }

    private enum State {
        case header
        case payload(Header, collected: ByteBuffer)
        case failed(WebSocketProtocolError)
    }

    private var state: State = .header
    /// Bytes of a header that arrived split across reads.
    private var partialHeader: ByteBuffer?
    private let allocator: ByteBufferAllocator

    public init(
        maxFrameSize: Int = 1 << 20,
        expectMasked: Bool = true,
        allowCompressionBit: Bool = false,
        allocator: ByteBufferAllocator = ByteBufferAllocator()
    ) {
        self.maxFrameSize = maxFrameSize
        self.expectMasked = expectMasked
        self.allowCompressionBit = allowCompressionBit
        self.allocator = allocator
    }

    /// Parses the next complete frame, consuming its bytes from `input`. Returns `nil` when `input` is used up
    /// without completing a frame (the partial frame is kept). After an error every call throws it again.
    public mutating func next(_ input: inout ByteBuffer) throws(WebSocketProtocolError) -> WebSocketFrame? {
        switch self.state {
        case .failed(let error):
            throw error
        case .payload(let header, var collected):
            self.state = .header  // drop our reference so appending to `collected` does not copy it
            let wanted = header.length - collected.readableBytes
            let available = min(wanted, input.readableBytes)
            self.copyPayload(from: &input, count: available, header: header, offset: collected.readableBytes,
                             into: &collected)
            if available < wanted {
                self.state = .payload(header, collected: collected)
                return nil
            }
            return WebSocketFrame(fin: header.fin, rsv1: header.rsv1, opcode: header.opcode, payload: collected)
        case .header:
            guard let header = try self.parseHeader(&input) else { return nil }
            if header.length <= input.readableBytes {
                return WebSocketFrame(
                    fin: header.fin, rsv1: header.rsv1, opcode: header.opcode,
                    payload: self.readPayload(from: &input, header: header)
                )
            }
            // Sized by what arrived, not by what the header announces: a peer that sends a 14-byte header
            // for a 1 MiB frame and then stalls must not make us allocate the 1 MiB up front.
            var collected = self.allocator.buffer(capacity: min(header.length, max(input.readableBytes, 4096)))
            self.copyPayload(from: &input, count: input.readableBytes, header: header, offset: 0, into: &collected)
            self.state = .payload(header, collected: collected)
            return nil
        }
    }

    // MARK: - Header

    /// Consumes a complete header from `input` (or from the stashed partial header plus `input`).
    private mutating func parseHeader(_ input: inout ByteBuffer) throws(WebSocketProtocolError) -> Header? {
        do {
            if var partial = self.partialHeader, partial.readableBytes > 0 {
                self.partialHeader = nil
                defer { self.partialHeader = partial }
                // Take only the bytes that belong to the header: first the 2 fixed bytes, then the rest.
                Self.move(min(2 - min(partial.readableBytes, 2), input.readableBytes), from: &input, to: &partial)
                if partial.readableBytes >= 2 {
                    let total = Self.headerLength(byte1: partial.getInteger(at: partial.readerIndex + 1)!)
                    Self.move(min(total - partial.readableBytes, input.readableBytes), from: &input, to: &partial)
                }
                let parsed = try partial.withUnsafeReadableBytes {
                    (bytes) throws(WebSocketProtocolError) -> (Header, Int)? in try self.decodeHeader(bytes)
                }
                guard let (header, _) = parsed else { return nil }
                partial.clear()
                return header
            }
            let parsed = try input.withUnsafeReadableBytes {
                (bytes) throws(WebSocketProtocolError) -> (Header, Int)? in try self.decodeHeader(bytes)
            }
            guard let (header, consumed) = parsed else {
                var partial = self.partialHeader ?? self.allocator.buffer(capacity: WebSocketFrameEncoder.maximumHeaderLength)
                partial.clear()
                partial.writeBuffer(&input)
                self.partialHeader = partial
                return nil
            }
            input.moveReaderIndex(forwardBy: consumed)
            return header
        } catch {
            self.state = .failed(error)
            throw error
        }
    }

    private static func move(_ count: Int, from input: inout ByteBuffer, to partial: inout ByteBuffer) {
        guard count > 0, var slice = input.readSlice(length: count) else { return }
        partial.writeBuffer(&slice)
    }

    /// Header length implied by byte 1 (MASK bit and 7-bit length).
    @inline(__always)
    private static func headerLength(byte1: UInt8) -> Int {
        let len7 = byte1 & 0x7F
        return 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + (byte1 & 0x80 != 0 ? 4 : 0)
    }

    /// Decodes and validates a header at the start of `bytes`; `nil` when more bytes are needed. The checks on
    /// the first two bytes run as soon as they are there, so a bad frame fails before its length is known.
    @inline(__always)
    private func decodeHeader(_ bytes: UnsafeRawBufferPointer) throws(WebSocketProtocolError) -> (Header, Int)? {
        guard bytes.count >= 2 else { return nil }
        let byte0 = bytes[0]
        let byte1 = bytes[1]
        // RFC 6455 §5.2: RSV2/RSV3 have no meaning without an extension; we negotiate none that uses them.
        guard byte0 & 0x30 == 0 else { throw .reservedBitsSet }
        guard let opcode = WebSocketOpcode(rawValue: byte0 & 0x0F) else { throw .reservedOpcode(byte0 & 0x0F) }
        let fin = byte0 & 0x80 != 0
        let rsv1 = byte0 & 0x40 != 0
        if rsv1 {
            // RFC 7692 §6: RSV1 marks the first frame of a compressed message, only with the extension.
            guard self.allowCompressionBit else { throw .reservedBitsSet }
            // RFC 7692 §6.1: never on control frames or continuation frames.
            guard opcode == .text || opcode == .binary else { throw .unexpectedCompressionBit }
        }
        // RFC 6455 §5.1: a server closes on an unmasked client frame; a client on a masked server frame.
        let masked = byte1 & 0x80 != 0
        guard masked == self.expectMasked else { throw .unexpectedMasking(expectedMasked: self.expectMasked) }
        let len7 = Int(byte1 & 0x7F)
        if opcode.isControl {
            // RFC 6455 §5.5: control frames are never fragmented and carry at most 125 bytes.
            guard fin else { throw .fragmentedControlFrame }
            guard len7 <= 125 else { throw .controlFrameTooLong(length: len7) }
        }
        // The length is judged as soon as its bytes are there, before waiting for the masking key.
        let lengthEnd = len7 == 126 ? 4 : len7 == 127 ? 10 : 2
        guard bytes.count >= lengthEnd else { return nil }
        var length = len7
        var index = 2
        if len7 == 126 {
            length = Int(UInt16(bigEndian: bytes.loadUnaligned(fromByteOffset: 2, as: UInt16.self)))
            index = 4
        } else if len7 == 127 {
            let wide = UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: 2, as: UInt64.self))
            // RFC 6455 §5.2: "the most significant bit MUST be 0".
            guard wide & (1 << 63) == 0 else { throw .invalidPayloadLength }
            guard wide <= UInt64(self.maxFrameSize) else { throw .frameTooLarge(limit: self.maxFrameSize) }
            length = Int(wide)
            index = 10
        }
        guard length <= self.maxFrameSize else { throw .frameTooLarge(limit: self.maxFrameSize) }
        guard bytes.count >= index + (masked ? 4 : 0) else { return nil }
        var maskingKey: (UInt8, UInt8, UInt8, UInt8)? = nil
        if masked {
            maskingKey = (bytes[index], bytes[index + 1], bytes[index + 2], bytes[index + 3])
            index += 4
        }
        return (Header(fin: fin, rsv1: rsv1, opcode: opcode, length: length, maskingKey: maskingKey), index)
    }

    // MARK: - Payload

    /// Reads a payload that is wholly in `input`.
    @inline(__always)
    private func readPayload(from input: inout ByteBuffer, header: Header) -> ByteBuffer {
        guard header.maskingKey != nil, header.length > 0 else {
            return input.readSlice(length: header.length)!  // zero-copy
        }
        var payload = self.allocator.buffer(capacity: header.length)
        self.copyPayload(from: &input, count: header.length, header: header, offset: 0, into: &payload)
        return payload
    }

    /// Appends `count` payload bytes from `input` to `output`, unmasking at key phase `offset`.
    @inline(__always)
    private func copyPayload(
        from input: inout ByteBuffer,
        count: Int,
        header: Header,
        offset: Int,
        into output: inout ByteBuffer
    ) {
        guard count > 0 else { return }
        guard let key = header.maskingKey else {
            var slice = input.readSlice(length: count)!
            output.writeBuffer(&slice)
            return
        }
        input.withUnsafeReadableBytes { source in
            let source = UnsafeRawBufferPointer(rebasing: source[0..<count])
            output.writeWithUnsafeMutableBytes(minimumWritableBytes: count) { destination in
                WebSocketMasking.apply(key: key, offset: offset, source: source, destination: destination.baseAddress!)
                return count
            }
        }
        input.moveReaderIndex(forwardBy: count)
    }
}
