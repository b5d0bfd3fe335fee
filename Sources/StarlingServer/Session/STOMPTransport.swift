import NIOCore

/// Why a transport closes; each transport maps it to its own signal (a WebSocket close code, or just TCP close).
enum TransportCloseReason: Equatable {
    /// DISCONNECT handled, or the peer went away.
    case normal
    /// A STOMP protocol error (an ERROR frame was sent first).
    case protocolError
    /// The server is shutting down (WebSocket 1001).
    case goingAway
    /// The client does not read fast enough (outbound budget exceeded).
    case slowConsumer
    /// The client sent nothing for longer than the heart-beat allowed.
    case heartbeatTimeout
}

extension TransportCloseReason {
    /// For the `connection closed` log line.
    var logName: String {
        switch self {
        case .normal: "DISCONNECT"
        case .protocolError: "ERROR sent"
        case .goingAway: "server shutting down"
        case .slowConsumer: "slow consumer"
        case .heartbeatTimeout: "heart-beat timeout"
        }
    }
}

/// How a `STOMPConnection` reaches its socket: plain TCP or WebSocket messages. Event-loop-bound.
protocol STOMPTransport: AnyObject {
    /// Writes one STOMP frame made of `head` followed by `body` (written without copying `body`); no flush.
    func write(head: ByteBuffer?, body: ByteBuffer, isText: Bool)
    /// Writes a heart-beat EOL (STOMP 1.2 "Heart-beating"); no flush.
    func writeHeartbeat()
    func flush()
    /// Flushes what was written, then closes the connection (after the bytes went out, or a short timeout).
    func close(_ reason: TransportCloseReason)
    /// False while more than the outbound budget is waiting to be written to the socket.
    var isWritable: Bool { get }
    /// Stops (false) or resumes (true) reading from the socket: backpressure on a client sending too fast.
    func setReading(_ reading: Bool)
    /// The client's IP address (for per-address limits), when known.
    var remoteAddress: String? { get }
    /// True when closing tells the peer why (WebSocket close codes); plain TCP gets an ERROR frame instead.
    var hasCloseCodes: Bool { get }
}
