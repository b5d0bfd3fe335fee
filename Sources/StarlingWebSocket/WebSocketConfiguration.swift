import NIOCore

/// Limits and options of one server-side WebSocket connection.
///
/// The limits are checked while parsing (a frame header announcing more than `maxFrameSize` is refused before
/// any of its payload is buffered), and `maxMessageSize` caps the assembled message *after* inflation, so a
/// decompression bomb is stopped as soon as it passes the cap.
public struct WebSocketConfiguration: Sendable {
    /// The largest payload of one frame (data or continuation) we accept. Larger -> close 1009.
    public var maxFrameSize: Int = 1 << 20
    /// The largest assembled message we accept, after reassembly and inflation. Larger -> close 1009.
    public var maxMessageSize: Int = 1 << 20
    /// The subprotocols this server speaks, in preference order (e.g. `["v12.stomp", "v11.stomp", "v10.stomp"]`).
    public var subprotocols: [String] = []
    /// permessage-deflate (RFC 7692) settings; `nil` means the extension is never negotiated.
    public var deflate: PerMessageDeflateConfiguration? = PerMessageDeflateConfiguration()
    /// After we send a Close frame, how long we wait for the peer's Close before dropping TCP (RFC 6455 §7.1.1).
    public var closeTimeout: TimeAmount = .seconds(5)
    /// Origins (`scheme://host[:port]`, compared ASCII case-insensitively) a browser page may connect from; empty =
    /// any. A request without `Origin` (not a browser) is not affected. A refused origin gets 403.
    public var allowedOrigins: [String] = []

    public init() {}
}
