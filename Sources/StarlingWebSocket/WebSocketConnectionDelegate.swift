import NIOCore

/// Receives what a `WebSocketConnectionHandler` decodes. Called on the channel's event loop only.
public protocol WebSocketConnectionDelegate: AnyObject {
    /// A complete message: reassembled, inflated, and UTF-8-validated when `isText`.
    func webSocketConnection(_ connection: WebSocketConnectionHandler, didReceiveMessage message: ByteBuffer, isText: Bool)

    /// Called exactly once when the connection is finished for any reason (closing handshake, protocol error,
    /// close timeout, TCP drop). `code` is the peer's Close code when the peer sent one, the code we sent when
    /// we failed the connection or our Close went unanswered, and `nil` when TCP ended without a Close.
    func webSocketConnectionDidClose(_ connection: WebSocketConnectionHandler, code: WebSocketCloseCode?)

    /// The socket takes writes again (it had more than the channel's high-water mark queued, and drained below the
    /// low one).
    func webSocketConnectionBecameWritable(_ connection: WebSocketConnectionHandler)
}

extension WebSocketConnectionDelegate {
    public func webSocketConnectionBecameWritable(_ connection: WebSocketConnectionHandler) {}
}
