import Logging
import NIOCore
import StarlingBroker
import StarlingSTOMP

/// One STOMP session on one connection: feeds inbound bytes to the parser and the session state machine, carries
/// out their actions against the loop's broker, writes deliveries, and keeps the heart-beats. Lives on one event
/// loop and is touched only there (DESIGN.md threading model); not Sendable.
final class STOMPConnection: MessageSink {
    struct Settings {
        var parserLimits = STOMPParserLimits()
        var session: SessionStateMachine.Configuration
        /// Extra silence allowed past the negotiated client heart-beat interval, as a multiple of it.
        var heartbeatGraceFactor = 1.5
        /// A connection that has not sent CONNECT within this time is closed.
        var connectTimeout = TimeAmount.seconds(10)
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

    // Heart-beat bookkeeping. Outbound: a flag set on every write and checked by the timer, so the delivery path
    // never reads a clock. Inbound: the time of the last read (one clock read per socket read, only when the
    // client heart-beats), so a silent client is closed right when its allowance runs out.
    private var wroteSinceTick = false
    private var receiveTimeout: TimeAmount?
    private var lastRead = NIODeadline.uptimeNanoseconds(0)
    private var sendTimer: Scheduled<Void>?
    private var receiveTimer: Scheduled<Void>?
    private var connectTimer: Scheduled<Void>?

    var needsFlush = false
    var sessionID: String { self.settings.session.sessionID }

    init(loop: LoopBroker, transport: any STOMPTransport, settings: Settings, logger: Logger) {
        self.loop = loop
        self.transport = transport
        self.settings = settings
        self.parser = STOMPFrameParser(limits: settings.parserLimits, version: .v1_2)
        self.machine = SessionStateMachine(configuration: settings.session)
        self.logger = logger
        loop.register(self)
        self.connectTimer = loop.eventLoop.assumeIsolated().scheduleTask(in: settings.connectTimeout) { [weak self] in
            guard let self, !self.closed else { return }
            self.logger.info("no CONNECT in time", metadata: ["session": "\(self.sessionID)"])
            self.perform(.error(message: "no CONNECT frame within \(settings.connectTimeout.nanoseconds / 1_000_000) ms", receiptID: nil, detail: nil))
        }
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
            self.connectTimer?.cancel()
            self.connectTimer = nil
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
            var headers: STOMPHeaders = [:]
            headers.add("version", supported)
            headers.add("message", "no supported protocol version in accept-version (supported: \(supported))")
            if let receiptID { headers.add("receipt-id", receiptID) }
            headers.add("content-type", "text/plain")
            self.writeFrame(STOMPFrame(.error, headers: headers, body: ByteBuffer(string: "Supported protocol versions are \(supported)")))
            self.close(.protocolError)
        case .error(let message, let receiptID, let detail):
            var headers: STOMPHeaders = [:]
            headers.add("message", message)
            if let receiptID { headers.add("receipt-id", receiptID) }
            var body = ByteBuffer()
            if let detail {
                headers.add("content-type", "text/plain")
                body.writeString(detail)
            }
            self.logger.debug("protocol error", metadata: ["session": "\(self.sessionID)", "error": "\(message)"])
            self.writeFrame(STOMPFrame(.error, headers: headers, body: body))
            self.close(.protocolError)
        }
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

    func deliver(_ message: BrokerMessage, to subscription: TopicSubscription) {
        guard !self.closed, let transport = self.transport else { return }
        if subscription.ackMode == .auto {
            transport.write(head: subscription.head, body: message.shared(for: self.version), isText: message.isUTF8)
        } else {
            // Client ack modes need an `ack` header (1.2) naming this delivery: a small per-delivery head.
            var head = subscription.head
            STOMPFrameEncoder.writeHeader("ack", message.messageID, to: &head, version: self.version)
            transport.write(head: head, body: message.shared(for: self.version), isText: message.isUTF8)
        }
        self.wroteSinceTick = true
    }

    func flushDeliveries() {
        guard !self.closed, let transport = self.transport else { return }
        transport.flush()
        if !transport.isWritable {
            // Past the outbound budget after a flush: the client is not reading. DESIGN.md: disconnect, with ERROR.
            self.logger.info("slow consumer disconnected", metadata: ["session": "\(self.sessionID)"])
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
        self.sendTimer?.cancel()
        self.receiveTimer?.cancel()
        self.connectTimer?.cancel()
        self.connectTimer = nil
        self.sendTimer = nil
        self.receiveTimer = nil
        for subscription in self.subscriptions.values { self.loop.unsubscribe(subscription) }
        self.subscriptions.removeAll()
        self.loop.unregister(self)
        self.transport = nil
    }

    // MARK: heart-beats

    private func startHeartbeats(_ heartbeat: SessionStateMachine.NegotiatedHeartbeat) {
        if heartbeat.send > 0 {
            // Ticking at half the interval guarantees a byte at least every interval.
            self.scheduleHeartbeatTick(.milliseconds(Int64(max(heartbeat.send / 2, 1))))
        }
        if heartbeat.receive > 0 {
            let timeout = TimeAmount.milliseconds(Int64(Double(heartbeat.receive) * self.settings.heartbeatGraceFactor))
            self.receiveTimeout = timeout
            self.lastRead = .now()
            self.scheduleLivenessCheck(at: self.lastRead + timeout)
        }
    }

    private func scheduleHeartbeatTick(_ period: TimeAmount) {
        self.sendTimer = self.loop.eventLoop.assumeIsolated().scheduleTask(in: period) { [weak self] in
            guard let self, !self.closed else { return }
            self.heartbeatTick()
            self.scheduleHeartbeatTick(period)
        }
    }

    private func scheduleLivenessCheck(at deadline: NIODeadline) {
        self.receiveTimer = self.loop.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [weak self] in
            guard let self, !self.closed, let timeout = self.receiveTimeout else { return }
            let due = self.lastRead + timeout
            if due <= .now() {
                self.logger.info("heart-beat timeout", metadata: ["session": "\(self.sessionID)"])
                self.close(.heartbeatTimeout)
            } else {
                self.scheduleLivenessCheck(at: due)
            }
        }
    }

    private func heartbeatTick() {
        guard !self.closed, let transport = self.transport else { return }
        if !self.wroteSinceTick {
            transport.writeHeartbeat()
            self.scheduleFlush()
        }
        self.wroteSinceTick = false
    }
}
