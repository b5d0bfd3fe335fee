import NIOCore
import StarlingBroker
import StarlingWebSocket

/// STOMP over WebSocket: each WebSocket message's payload feeds the session's parser (a frame may span several
/// messages, several frames may share one), and each STOMP frame goes out as one WebSocket message.
final class WebSocketSTOMPBridge: WebSocketConnectionDelegate, STOMPTransport {
    /// Strong while the connection is open (a weak load per delivery showed in profiles); the handler holds the
    /// bridge as its delegate until `webSocketConnectionDidClose`, which breaks the cycle from this side too.
    private var webSocket: WebSocketConnectionHandler?
    private var connection: STOMPConnection?
    private let channel: any Channel

    init(channel: any Channel) {
        self.channel = channel
    }

    /// Binds the bridge to its handler and session, once both exist.
    func start(webSocket: WebSocketConnectionHandler, connection: STOMPConnection) {
        self.webSocket = webSocket
        self.connection = connection
    }

    // MARK: WebSocketConnectionDelegate

    func webSocketConnection(_ connection: WebSocketConnectionHandler, didReceiveMessage message: ByteBuffer, isText: Bool) {
        var message = message
        self.connection?.received(&message)
    }

    func webSocketConnectionDidClose(_ connection: WebSocketConnectionHandler, code: WebSocketCloseCode?) {
        self.connection?.transportClosed()
        self.connection = nil
        self.webSocket = nil
    }

    func webSocketConnectionBecameWritable(_ connection: WebSocketConnectionHandler) {
        self.connection?.transportWritable()
    }

    // MARK: STOMPTransport

    func write(head: ByteBuffer?, body: ByteBuffer, isText: Bool) {
        self.webSocket?.sendMessage(prefix: head, payload: body, isText: isText)
    }

    private static let eol = ByteBuffer(string: "\n")

    func writeHeartbeat() {
        self.webSocket?.sendMessage(prefix: nil, payload: Self.eol, isText: true)
    }

    func flush() {
        self.webSocket?.flush()
    }

    func close(_ reason: TransportCloseReason) {
        guard let webSocket else { return }
        switch reason {
        case .normal: webSocket.close(code: .normalClosure, reason: "")
        // The WebSocket framing was fine: a STOMP-level error is a policy violation (1008), not 1002.
        case .protocolError: webSocket.close(code: .policyViolation, reason: "STOMP protocol error")
        case .goingAway: webSocket.close(code: .goingAway, reason: "server shutting down")
        case .slowConsumer: webSocket.close(code: .policyViolation, reason: "slow consumer")
        case .heartbeatTimeout: webSocket.close(code: .policyViolation, reason: "heart-beat timeout")
        }
    }

    var isWritable: Bool { self.channel.isWritable }
    var hasCloseCodes: Bool { true }
    var remoteAddress: String? { self.channel.remoteAddress?.ipAddress }

    func setReading(_ reading: Bool) {
        _ = try? self.channel.syncOptions?.setOption(.autoRead, value: reading)
    }
}

/// The `--echo-path` endpoint: sends every message back as it came, for WebSocket conformance suites.
final class WebSocketEchoDelegate: WebSocketConnectionDelegate, ServerConnection {
    private let loop: LoopBroker
    private weak var webSocket: WebSocketConnectionHandler?

    init(loop: LoopBroker) {
        self.loop = loop
    }

    func start(_ webSocket: WebSocketConnectionHandler) {
        self.webSocket = webSocket
        self.loop.register(self)
    }

    func webSocketConnection(_ connection: WebSocketConnectionHandler, didReceiveMessage message: ByteBuffer, isText: Bool) {
        connection.sendMessage(prefix: nil, payload: message, isText: isText)
        connection.flush()
    }

    func webSocketConnectionDidClose(_ connection: WebSocketConnectionHandler, code: WebSocketCloseCode?) {
        self.loop.unregister(self)
    }

    func serverIsShuttingDown() {
        self.webSocket?.close(code: .goingAway, reason: "server shutting down")
    }
}
