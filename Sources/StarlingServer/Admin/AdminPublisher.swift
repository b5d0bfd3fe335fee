import Logging
import NIOCore
import StarlingBroker
import StarlingSTOMP

/// Publishes for the admin API (`POST /api/v1/publish`) through a STOMP session of its own on each event loop, fed
/// SEND frames: an HTTP publish has exactly the semantics of a STOMP one (destination checks, queue limits,
/// persistence with its receipt after the group commit, rooms and their history, `idempotency-key`), from one code
/// path. The session's RECEIPT or ERROR answers the request. An ERROR ends a STOMP session, so the next publish
/// starts a new one. Lives on its loop; not Sendable.
final class AdminPublisher {
    /// What a publish came to: accepted (RECEIPT), or refused with the ERROR's message.
    enum Outcome {
        case accepted
        case refused(String)
    }

    private let loop: LoopBroker
    private let makeConnection: (LoopBroker, any STOMPTransport) -> STOMPConnection
    private var session: (connection: STOMPConnection, transport: CapturingTransport)?
    private var nextReceipt: UInt64 = 0
    private var waiting: [String: EventLoopPromise<Outcome>] = [:]

    init(loop: LoopBroker, makeConnection: @escaping (LoopBroker, any STOMPTransport) -> STOMPConnection) {
        self.loop = loop
        self.makeConnection = makeConnection
    }

    /// Sends `body` to `destination` with `headers` (`destination`, `receipt`, `content-length` are set here).
    func publish(destination: String, headers: [(String, String)], body: ByteBuffer) -> EventLoopFuture<Outcome> {
        let session = self.currentSession()
        self.nextReceipt += 1
        let receipt = "admin-\(self.nextReceipt)"
        let promise = self.loop.eventLoop.makePromise(of: Outcome.self)
        self.waiting[receipt] = promise
        var frame = STOMPHeaders()
        frame.add("destination", destination)
        for (name, value) in headers where !["destination", "receipt", "content-length", "transaction"].contains(name) {
            frame.add(name, value)
        }
        frame.add("receipt", receipt)
        var bytes = STOMPFrameEncoder.encode(STOMPFrame(.send, headers: frame, body: body), version: .v1_2)
        session.connection.received(&bytes)
        return promise.futureResult
    }

    private func currentSession() -> (connection: STOMPConnection, transport: CapturingTransport) {
        if let session = self.session, !session.connection.closed { return session }
        let transport = CapturingTransport { [weak self] frame in self?.answer(frame) }
        let connection = self.makeConnection(self.loop, transport)
        transport.connection = connection
        var connect = ByteBuffer(string: "CONNECT\naccept-version:1.2\nhost:/\nlogin:admin\nheart-beat:0,0\n\n\0")
        connection.received(&connect)
        self.session = (connection, transport)
        return (connection, transport)
    }

    /// A frame the session wrote: a RECEIPT or an ERROR answers a publish (CONNECTED needs nothing).
    private func answer(_ frame: STOMPFrame) {
        switch frame.command {
        case .receipt:
            if let id = frame.headers["receipt-id"], let promise = self.waiting.removeValue(forKey: id) { promise.succeed(.accepted) }
        case .error:
            let message = frame.headers["message"] ?? "refused"
            if let id = frame.headers["receipt-id"], let promise = self.waiting.removeValue(forKey: id) {
                promise.succeed(.refused(message))
            }
            // The session is over: whatever else waited on it is refused the same way.
            for promise in self.waiting.values { promise.succeed(.refused(message)) }
            self.waiting.removeAll()
            self.session = nil
        default:
            break
        }
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
        guard !self.closed else { return }
        self.closed = true
        // As a socket would: the session learns that its transport is gone once the current work is done.
        let connection = self.connection
        connection?.loop.eventLoop.assumeIsolated().execute { connection?.transportClosed() }
    }

    var isWritable: Bool { true }
    func setReading(_ reading: Bool) {}
    var remoteAddress: String? { "admin" }
    var hasCloseCodes: Bool { false }
}
