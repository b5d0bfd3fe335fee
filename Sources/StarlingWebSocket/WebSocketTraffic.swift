/// Bytes and messages through the WebSocket connections of one event loop, for metrics: what the application sent
/// and received (payloads, before compression and after inflation) and what crossed the wire (frames, compressed).
/// Shared by the connections of one loop and touched only on it, so plain integers suffice; whoever reads them
/// (the server's `/metrics`) reads them on that loop.
public final class WebSocketTraffic {
    public var messagesOut = 0
    /// Message payloads as the application wrote them, before compression.
    public var payloadBytesOut = 0
    /// Frame bytes written, after compression (control frames not counted).
    public var wireBytesOut = 0
    public var messagesIn = 0
    /// Message payloads as delivered to the application, after inflation.
    public var payloadBytesIn = 0
    /// Bytes read from the socket.
    public var wireBytesIn = 0
    /// Connections failed for a message or frame over the size limit (close 1009), and for any other protocol error.
    public var tooBigFailures = 0
    public var protocolFailures = 0

    public init() {}
}
