import NIOHTTP1

/// An accepted upgrade: the headers of the `101 Switching Protocols` response and what was negotiated.
public struct WebSocketUpgrade: Sendable {
    /// `Upgrade`, `Connection`, `Sec-WebSocket-Accept`, and `Sec-WebSocket-Protocol` /
    /// `Sec-WebSocket-Extensions` when negotiated.
    public var responseHeaders: HTTPHeaders
    /// The chosen subprotocol, `nil` when the client offered none we speak.
    public var subprotocol: String?
    /// The permessage-deflate parameters, `nil` when not negotiated.
    public var deflate: NegotiatedDeflate?

    public init(responseHeaders: HTTPHeaders, subprotocol: String?, deflate: NegotiatedDeflate?) {
        self.responseHeaders = responseHeaders
        self.subprotocol = subprotocol
        self.deflate = deflate
    }
}

/// The outcome of `WebSocketHandshake.negotiate(request:configuration:)`.
public enum WebSocketHandshakeResult: Sendable {
    /// Send `101 Switching Protocols` with `upgrade.responseHeaders`, then switch the pipeline to WebSocket.
    case accept(WebSocketUpgrade)
    /// Answer with `status` and `headers`; `reason` says what was wrong with the request (for the body/logs).
    case reject(status: HTTPResponseStatus, headers: HTTPHeaders, reason: String)
}
