import Logging
import NIOCore
import StarlingBroker
import StarlingSTOMP

/// One STOMP session on one connection: feeds inbound bytes to the parser and the session state machine, carries
/// out their actions against the loop's broker, writes deliveries, and keeps the heart-beats. Lives on one event
/// loop and is touched only there (DESIGN.md threading model); not Sendable.
final class STOMPConnection: MessageSink, ConnectionClock.Member {
    struct Settings {
        var parserLimits = STOMPParserLimits()
        var session: SessionStateMachine.Configuration
        /// Extra silence allowed past the negotiated client heart-beat interval, as a multiple of it.
        var heartbeatGraceFactor = 1.5
        /// A connection that has not sent CONNECT within this time is closed.
        var connectTimeout = TimeAmount.seconds(10)
        /// "tcp" or "ws", for logs.
        var transportName = "tcp"
        var allocator = ByteBufferAllocator()
    }

    let loop: LoopBroker
    private var transport: (any STOMPTransport)?
    private var parser: STOMPFrameParser
    private var machine: SessionStateMachine
    private let settings: Settings
    private let logger: Logger
    private var subscriptions: [String: TopicSubscription] = [:]
    private var version = STOMPVersion.v1_2
    private var messageCounter: UInt64 = 0
    private var closed = false
    /// False once DISCONNECT or an error ended the session: later inbound frames are ignored.
    private var acceptingFrames = true

    // Timers, driven by the loop's `ConnectionClock`. Outbound heart-beats: a flag set on every write and
    // checked every half interval, so the delivery path never reads a clock. Inbound: the time of the last read
    // (one clock read per socket read, only when the client heart-beats).
    private let clock: ConnectionClock
    private var connectDeadline: NIODeadline?
    private var wroteSinceTick = false
    private var sendPeriod: TimeAmount?
    private var nextSendCheck = NIODeadline.uptimeNanoseconds(0)
    private var receiveTimeout: TimeAmount?
    private var lastRead = NIODeadline.uptimeNanoseconds(0)

    var needsFlush = false
    var sessionID: String { self.settings.session.sessionID }
    /// Built when something is logged, not kept per connection.
    private var logMetadata: Logger.Metadata {
        ["session": "\(self.sessionID)", "transport": "\(self.settings.transportName)"]
    }

    init(loop: LoopBroker, clock: ConnectionClock, transport: any STOMPTransport, settings: Settings, logger: Logger) {
        self.loop = loop
        self.clock = clock
        self.transport = transport
        self.settings = settings
        self.parser = STOMPFrameParser(limits: settings.parserLimits, version: .v1_2)
        self.machine = SessionStateMachine(configuration: settings.session)
        self.logger = logger
        loop.register(self)
        self.connectDeadline = .now() + settings.connectTimeout
        clock.add(self)
    }

    // MARK: inbound

    /// Bytes from the transport (a TCP read, or one WebSocket message's payload).
    func received(_ buffer: inout ByteBuffer) {
        if self.receiveTimeout != nil { self.lastRead = .now() }
        while self.acceptingFrames && !self.closed {
            let frame: STOMPFrame?
            do {
                frame = try self.parser.next(&buffer)
            } catch {
                self.perform(self.machine.parseFailed(error, receipt: self.parser.failedFrameReceipt))
                return
            }
            guard let frame else { return }
            self.perform(self.machine.receive(frame))
        }
    }

    private func perform(_ action: SessionStateMachine.Action) {
        switch action {
        case .connected(let frame, let version, let heartbeat):
            self.connectDeadline = nil
            self.version = version
            self.parser.version = version
            self.writeFrame(frame)
            self.startHeartbeats(heartbeat)
        case .subscribe(let id, let destination, let ackMode, let receipt):
            // The state machine validated the destination; a failure here is a bug, not a client error.
            guard let words = try? TopicName.patternWords(destination) else { return }
            let subscription = TopicSubscription(
                id: id, destination: destination, words: words, ackMode: ackMode, version: self.version, sink: self
            )
            self.subscriptions[id] = subscription
            self.loop.subscribe(subscription)
            self.sendReceipt(receipt)
        case .unsubscribe(let id, let receipt):
            if let subscription = self.subscriptions.removeValue(forKey: id) {
                self.loop.unsubscribe(subscription)
            }
            self.sendReceipt(receipt)
        case .publish(let publishes, let receipt):
            for publish in publishes { self.publish(publish) }
            self.sendReceipt(receipt)
        case .receipt(let receipt):
            self.sendReceipt(receipt)
        case .disconnect(let receipt):
            self.acceptingFrames = false
            self.sendReceipt(receipt)
            // Close after this tick's queued deliveries went out (a SEND just before DISCONNECT to one of our own
            // subscriptions still arrives).
            self.loop.eventLoop.assumeIsolated().execute { self.close(.normal) }
        case .unsupportedVersion(let supported, let receiptID):
            self.fail(
                "no supported protocol version in accept-version (supported: \(supported))", receiptID: receiptID,
                detail: "Supported protocol versions are \(supported)", extraHeaders: [("version", supported)]
            )
        case .error(let message, let receiptID, let detail):
            self.fail(message, receiptID: receiptID, detail: detail)
        }
    }

    /// Sends ERROR (`message`, `receipt-id` when given, a text body when there is detail), then closes.
    private func fail(_ message: String, receiptID: String?, detail: String?, extraHeaders: [(String, String)] = []) {
        var headers: STOMPHeaders = [:]
        for (name, value) in extraHeaders { headers.add(name, value) }
        headers.add("message", message)
        if let receiptID { headers.add("receipt-id", receiptID) }
        var body = ByteBuffer()
        if let detail {
            headers.add("content-type", "text/plain")
            body.writeString(detail)
        }
        self.logger.debug("protocol error", metadata: self.logMetadata.merging(["error": "\(message)"]) { $1 })
        self.writeFrame(STOMPFrame(.error, headers: headers, body: body))
        self.close(.protocolError)
    }

    private func publish(_ publish: SessionStateMachine.Publish) {
        guard let words = try? TopicName.publishWords(publish.destination) else { return }
        self.messageCounter &+= 1
        let message = BrokerMessage(
            destination: publish.destination,
            messageID: "\(self.sessionID)-\(self.messageCounter)",
            sendHeaders: publish.headers,
            body: publish.body,
            allocator: self.settings.allocator
        )
        self.loop.publish(message, words: words)
    }

    private func sendReceipt(_ receipt: String?) {
        guard let receipt else { return }
        self.writeFrame(STOMPFrame(.receipt, headers: ["receipt-id": receipt]))
    }

    private func writeFrame(_ frame: STOMPFrame) {
        guard let transport = self.transport else { return }
        let bytes = STOMPFrameEncoder.encode(frame, version: self.version, allocator: self.settings.allocator)
        transport.write(head: nil, body: bytes, isText: UTF8Check.isValid(frame.body))
        self.wroteSinceTick = true
        self.scheduleFlush()
    }

    private func scheduleFlush() {
        self.loop.scheduleFlush(self)
    }

    // MARK: MessageSink

    func deliver(_ messages: ArraySlice<BrokerMessage>, to subscription: TopicSubscription) {
        guard !self.closed, let transport = self.transport else { return }
        let version = self.version
        if subscription.ackMode == .auto {
            for message in messages {
                transport.write(head: subscription.head, body: message.shared(for: version), isText: message.isUTF8)
            }
        } else {
            for message in messages {
                // Client ack modes need an `ack` header (1.2) naming this delivery: a small per-delivery head.
                var head = subscription.head
                STOMPFrameEncoder.writeHeader("ack", message.messageID, to: &head, version: version)
                transport.write(head: head, body: message.shared(for: version), isText: message.isUTF8)
            }
        }
        self.wroteSinceTick = true
    }

    func flushDeliveries() {
        guard !self.closed, let transport = self.transport else { return }
        transport.flush()
        if !transport.isWritable {
            // Past the outbound budget after a flush: the client is not reading. DESIGN.md: disconnect, with ERROR.
            self.logger.info("slow consumer disconnected", metadata: self.logMetadata)
            var headers: STOMPHeaders = [:]
            headers.add("message", "slow consumer: outbound buffer limit exceeded")
            let bytes = STOMPFrameEncoder.encode(STOMPFrame(.error, headers: headers), version: self.version)
            transport.write(head: nil, body: bytes, isText: true)
            self.close(.slowConsumer)
        }
    }

    func serverIsShuttingDown() {
        guard !self.closed, let transport = self.transport else { return }
        if !transport.hasCloseCodes {
            // A plain TCP client has no close code to read: tell it in STOMP.
            var headers: STOMPHeaders = [:]
            headers.add("message", "server shutting down")
            self.writeFrame(STOMPFrame(.error, headers: headers))
        }
        self.close(.goingAway)
    }

    // MARK: lifecycle

    private func close(_ reason: TransportCloseReason) {
        guard !self.closed else { return }
        self.closed = true
        self.acceptingFrames = false
        self.transport?.close(reason)
    }

    /// The transport is gone (socket closed for any reason): drop every subscription and timer.
    func transportClosed() {
        self.closed = true
        self.clock.remove(self)
        for subscription in self.subscriptions.values { self.loop.unsubscribe(subscription) }
        self.subscriptions.removeAll()
        self.loop.unregister(self)
        self.transport = nil
    }

    // MARK: timers

    private func startHeartbeats(_ heartbeat: SessionStateMachine.NegotiatedHeartbeat) {
        let now = NIODeadline.now()
        if heartbeat.send > 0 {
            // Checking every half interval guarantees a byte at least every interval (plus one clock tick).
            let period = TimeAmount.milliseconds(Int64(max(heartbeat.send / 2, 1)))
            self.sendPeriod = period
            self.nextSendCheck = now + period
        }
        if heartbeat.receive > 0 {
            self.receiveTimeout = .milliseconds(Int64(Double(heartbeat.receive) * self.settings.heartbeatGraceFactor))
            self.lastRead = now
        }
    }

    func clockTick(now: NIODeadline) -> Bool {
        guard !self.closed, let transport = self.transport else { return false }
        if let deadline = self.connectDeadline {
            if now >= deadline {
                self.logger.info("no CONNECT in time", metadata: self.logMetadata)
                let milliseconds = self.settings.connectTimeout.nanoseconds / 1_000_000
                self.fail("no CONNECT frame within \(milliseconds) ms", receiptID: nil, detail: nil)
                return false
            }
            return true
        }
        if let timeout = self.receiveTimeout, now >= self.lastRead + timeout {
            self.logger.info("heart-beat timeout", metadata: self.logMetadata)
            self.close(.heartbeatTimeout)
            return false
        }
        if let period = self.sendPeriod, now >= self.nextSendCheck {
            if !self.wroteSinceTick {
                transport.writeHeartbeat()
                self.scheduleFlush()
            }
            self.wroteSinceTick = false
            self.nextSendCheck = now + period
        }
        return self.sendPeriod != nil || self.receiveTimeout != nil
    }
}
