import NIOCore

/// One parsed frame with its payload already unmasked (RFC 6455 §5.2).
public struct WebSocketFrame: Sendable, Equatable {
    public var fin: Bool
    /// RSV1: on the first frame of a message, "this message is compressed" (RFC 7692 §6).
    public var rsv1: Bool
    public var opcode: WebSocketOpcode
    public var payload: ByteBuffer

    public init(fin: Bool = true, rsv1: Bool = false, opcode: WebSocketOpcode, payload: ByteBuffer) {
        self.fin = fin
        self.rsv1 = rsv1
        self.opcode = opcode
        self.payload = payload
    }
}
