/// Why a WebSocket connection is failed (RFC 6455 §7.1.7). `closeCode` is the one mapping to a close code.
public enum WebSocketProtocolError: Error, Sendable, Equatable {
    /// A client frame without the MASK bit (RFC 6455 §5.1), or, when parsing server frames, a masked one.
    case unexpectedMasking(expectedMasked: Bool)
    /// RSV2 or RSV3 set, or RSV1 set without a negotiated extension that defines it (RFC 6455 §5.2).
    case reservedBitsSet
    /// RSV1 on a control or continuation frame (RFC 7692 §6.1).
    case unexpectedCompressionBit
    /// Opcode 3-7 or 0xB-0xF (RFC 6455 §5.2).
    case reservedOpcode(UInt8)
    /// A control frame with more than 125 payload bytes (RFC 6455 §5.5).
    case controlFrameTooLong(length: Int)
    /// A control frame without FIN (RFC 6455 §5.5).
    case fragmentedControlFrame
    /// A 64-bit payload length with its most significant bit set (RFC 6455 §5.2).
    case invalidPayloadLength
    /// A continuation frame with no message in progress (RFC 6455 §5.4).
    case unexpectedContinuation
    /// A new text/binary frame while a fragmented message is still open (RFC 6455 §5.4).
    case expectedContinuation
    /// A Close frame with a 1-byte payload (RFC 6455 §5.5.1).
    case invalidClosePayload
    /// A Close frame with a code that may not be sent (RFC 6455 §7.4).
    case invalidCloseCode(UInt16)
    /// A text message or close reason that is not UTF-8 (RFC 6455 §8.1).
    case invalidUTF8
    /// A compressed message that does not inflate (RFC 7692 §7.2.2).
    case invalidCompressedData
    /// A frame's payload is larger than `WebSocketConfiguration.maxFrameSize`.
    case frameTooLarge(limit: Int)
    /// An assembled (and inflated) message is larger than `WebSocketConfiguration.maxMessageSize`.
    case messageTooLarge(limit: Int)
    /// zlib could not set up a stream (out of memory); not the peer's fault.
    case compressionUnavailable

    /// The status code we send when failing the connection for this reason.
    public var closeCode: WebSocketCloseCode {
        switch self {
        case .invalidUTF8, .invalidCompressedData:
            return .invalidPayload
        case .frameTooLarge, .messageTooLarge:
            return .messageTooBig
        case .compressionUnavailable:
            return .internalError
        case .unexpectedMasking, .reservedBitsSet, .unexpectedCompressionBit, .reservedOpcode,
            .controlFrameTooLong, .fragmentedControlFrame, .invalidPayloadLength, .unexpectedContinuation,
            .expectedContinuation, .invalidClosePayload, .invalidCloseCode:
            return .protocolError
        }
    }

    /// A short reason for the Close frame (ASCII, well under the 123-byte limit).
    public var closeReason: String {
        switch self {
        case .unexpectedMasking(let expectedMasked): return expectedMasked ? "unmasked frame" : "masked frame"
        case .reservedBitsSet: return "reserved bits set"
        case .unexpectedCompressionBit: return "RSV1 on control or continuation frame"
        case .reservedOpcode(let opcode): return "reserved opcode \(opcode)"
        case .controlFrameTooLong: return "control frame too long"
        case .fragmentedControlFrame: return "fragmented control frame"
        case .invalidPayloadLength: return "invalid payload length"
        case .unexpectedContinuation: return "unexpected continuation frame"
        case .expectedContinuation: return "expected continuation frame"
        case .invalidClosePayload: return "invalid close payload"
        case .invalidCloseCode(let code): return "invalid close code \(code)"
        case .invalidUTF8: return "invalid UTF-8"
        case .invalidCompressedData: return "invalid compressed data"
        case .frameTooLarge(let limit): return "frame larger than \(limit) bytes"
        case .messageTooLarge(let limit): return "message larger than \(limit) bytes"
        case .compressionUnavailable: return "compression unavailable"
        }
    }
}
