import Logging
import NIOCore
import StarlingBroker
import StarlingSTOMP

/// Publishes for the admin API (`POST /api/v1/publish`) through a STOMP session of its own, fed one SEND frame: an
/// HTTP publish has exactly the semantics of a STOMP one (destination checks, queue limits, persistence with its
/// receipt after the group commit, rooms and their history, `idempotency-key`), from one code path. The session's
/// RECEIPT or ERROR answers the request. One session per publish: a refusal (an ERROR ends a STOMP session) touches
/// no other request. Lives on its loop; not Sendable.
final class AdminPublisher {
    /// What a publish came to: accepted (RECEIPT), or refused with the ERROR's message.
    enum Outcome {
        case accepted
        case refused(String)
    }

    private let loop: LoopBroker
    private let makeConnection: (LoopBroker, any STOMPTransport) -> STOMPConnection

    init(loop: LoopBroker, makeConnection: @escaping (LoopBroker, any STOMPTransport) -> STOMPConnection) {
        self.loop = loop
        self.makeConnection = makeConnection
    }

    /// Sends `body` to `destination` with `headers` (`destination`, `receipt`, `content-length`, `transaction` are set
    /// here). Accepted means what a RECEIPT means, and more: the answer comes after this loop handed the message to
    /// the subscribers' loops, so a publish made after it (from anywhere) reaches them after this one.
    func publish(destination: String, headers: [(String, String)], body: ByteBuffer) -> EventLoopFuture<Outcome> {
        let promise = self.loop.eventLoop.makePromise(of: Outcome.self)
        let eventLoop = self.loop.eventLoop
        let transport = CapturingTransport { frame in
            switch frame.command {
            case .receipt:
                // After the loop's outbox task, which `publish` scheduled before this RECEIPT was written.
                eventLoop.assumeIsolated().execute { promise.succeed(.accepted) }
            case .error:
                promise.succeed(.refused(frame.headers["message"] ?? "refused"))
            default:
                break
            }
        }
        let connection = self.makeConnection(self.loop, transport)
        transport.connection = connection
        var frame = STOMPHeaders()
        frame.add("destination", destination)
        for (name, value) in headers where !["destination", "receipt", "content-length", "transaction"].contains(name) {
            frame.add(name, value)
        }
        frame.add("receipt", "publish")
        var bytes = ByteBuffer(string: "CONNECT\naccept-version:1.2\nhost:/\nlogin:admin\nheart-beat:0,0\n\n\0")
        var send = STOMPFrameEncoder.encode(STOMPFrame(.send, headers: frame, body: body), version: .v1_2)
        bytes.writeBuffer(&send)
        connection.received(&bytes)
        // Answered (a persistent SEND's RECEIPT comes after the group commit): the session is done.
        promise.futureResult.assumeIsolated().whenComplete { _ in connection.close(.normal) }
        return promise.futureResult
    }
}

/// The admin session's end of the wire: parses what the session writes and hands each frame back.
private final class CapturingTransport: STOMPTransport {
    private var parser = STOMPFrameParser(limits: STOMPParserLimits(maxBodySize: 1 << 20), version: .v1_2)
    private let received: (STOMPFrame) -> Void
    weak var connection: STOMPConnection?
    private var closed = false

    init(received: @escaping (STOMPFrame) -> Void) {
        self.received = received
    }

    func write(head: ByteBuffer?, body: ByteBuffer, isText: Bool) {
        var bytes = head ?? ByteBuffer()
        var body = body
        bytes.writeBuffer(&body)
        while let frame = try? self.parser.next(&bytes) { self.received(frame) }
    }

    func writeHeartbeat() {}
    func flush() {}

    func close(_ reason: TransportCloseReason) {
        guard !self.closed, let connection = self.connection else { return }
        self.closed = true
        // As a socket would: the session learns that its transport is gone once the current work is done.
        connection.loop.eventLoop.assumeIsolated().execute { connection.transportClosed() }
    }

    var isWritable: Bool { true }
    func setReading(_ reading: Bool) {}
    var remoteAddress: String? { "admin" }
    var hasCloseCodes: Bool { false }
}
