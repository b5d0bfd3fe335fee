import Logging
import NIOCore
import NIOPosix
import StarlingBroker
import StarlingSTOMP

/// One STOMP session on one connection: feeds inbound bytes to the parser and the session state machine, carries
/// out their actions against the loop's broker, writes deliveries, and keeps the heart-beats. Lives on one event
/// loop and is touched only there (DESIGN.md threading model); not Sendable.
final class STOMPConnection: MessageSink, ConnectionClock.Member {
    let loop: LoopBroker
    var transport: (any STOMPTransport)?
    private var parser: STOMPFrameParser
    private(set) var machine: SessionStateMachine
    private let shared: SharedSettings
    var settings: Settings { self.shared.value }
    /// How the client is connected, for logs and metrics.
    let kind: ConnectionKind
    /// A JWT from the WebSocket handshake, used when CONNECT has no passcode.
    let handshakeToken: String?
    let logger: Logger
    var subscriptions: [String: TopicSubscription] = [:]
    /// Topic subscriptions with a client ack mode: ACKs for their deliveries are accepted (and need nothing).
    var clientAckTopicSubscriptions = 0
    /// Queue bookkeeping, allocated by the first queue operation (8 bytes per connection that never uses queues).
    var queueBox: QueueState.Box?
    var queue: QueueState {
        get { self.queueBox?.state ?? QueueState() }
        _modify {
            if self.queueBox == nil { self.queueBox = QueueState.Box() }
            yield &self.queueBox!.state
        }
    }
    /// CONNECT `login` (names the user of `/user/` destinations) and `client-id` (names durable subscriptions).
    var login: String?
    var clientID: String?
    /// `user-name:<login>` for every MESSAGE this session sends (set at CONNECT; none without a login). Only the
    /// server sets `user-name`: one sent by a client is never passed on, so authors cannot be spoofed.
    private var authorHeaders: [(name: String, value: String)] = []
    var version = STOMPVersion.v1_2
    private var messageCounter: UInt64 = 0
    var closed = false
    /// True while CONNECT's credentials are being checked; input meanwhile waits in `heldInput`.
    var authenticating = false
    var heldInput: ByteBuffer?
    /// `max-frame-rate`: tokens left (may go below zero by the frame that emptied them) and when they were counted.
    var frameTokens = 0.0
    var frameTokensAt = NIODeadline.uptimeNanoseconds(0)
    /// True while reading is paused because the client sent faster than `max-frame-rate`.
    var throttled = false
    /// The authenticated user's roles (for `[[acl]]` rules), and destinations this session was allowed to SEND to.
    var roles: [String] = []
    var sendAllowed: Set<String> = []
    /// Closes the session when its token expires (unless refreshed first).
    var expiry: Scheduled<Void>?
    /// Set while the socket is full: deliveries wait here, per their destinations' slow-consumer policies.
    var backlog: OutboundBacklog?
    /// False once DISCONNECT or an error ended the session: later inbound frames are ignored.
    var acceptingFrames = true

    // Timers, driven by the loop's `ConnectionClock`. Outbound heart-beats: a flag set on every write and
    // checked every half interval, so the delivery path never reads a clock. Inbound: the time of the last read
    // (one clock read per socket read, only when the client heart-beats).
    let clock: ConnectionClock
    /// The loop's counters (metrics).
    let metrics: LoopMetrics
    /// True from CONNECTED until the transport closes (the `sessions` gauge).
    var sessionOpen = false
    /// Why the server closed the connection (nil: the client did), for the log line when it is gone.
    var closeReason: TransportCloseReason?
    var connectDeadline: NIODeadline?
    var wroteSinceTick = false
    var sendPeriod: TimeAmount?
    var nextSendCheck = NIODeadline.uptimeNanoseconds(0)
    var receiveTimeout: TimeAmount?
    var lastRead = NIODeadline.uptimeNanoseconds(0)

    var needsFlush = false
    var sessionID: String { self.machine.sessionID }
    /// Built when something is logged, not kept per connection.
    var logMetadata: Logger.Metadata {
        ["session": "\(self.sessionID)", "transport": "\(self.kind.name)"]
    }

    init(
        loop: LoopBroker, clock: ConnectionClock, metrics: LoopMetrics, transport: any STOMPTransport, settings: SharedSettings,
        identity: Identity, logger: Logger
    ) {
        self.loop = loop
        self.clock = clock
        self.metrics = metrics
        metrics.connections[identity.kind.rawValue] += 1
        metrics.server.opened(identity.kind)
        if identity.kind != .internal {
            logger.info("connection opened", metadata: [
                "session": "\(identity.sessionID)", "transport": "\(identity.kind.name)", "remote": "\(transport.remoteAddress ?? "?")",
            ])
        }
        self.transport = transport
        self.shared = settings
        self.kind = identity.kind
        self.handshakeToken = identity.handshakeToken
        self.parser = STOMPFrameParser(limits: settings.value.parserLimits, version: .v1_2)
        self.machine = SessionStateMachine(configuration: settings.value.session, sessionID: identity.sessionID, maxVersion: identity.maxVersion)
        self.logger = logger
        loop.register(self)
        self.connectDeadline = .now() + settings.value.connectTimeout
        clock.add(self)
    }

    // MARK: inbound

    /// Bytes from the transport (a TCP read, or one WebSocket message's payload).
    func received(_ buffer: inout ByteBuffer) {
        if self.receiveTimeout != nil { self.lastRead = .now() }
        if self.authenticating || self.throttled {
            self.holdInput(&buffer)
            return
        }
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
            if self.authenticating || self.spendFrameToken() {
                // Frames after CONNECT wait until the credentials are checked; frames past the rate limit, until the
                // bucket refills.
                self.holdInput(&buffer)
                return
            }
        }
    }

    private func perform(_ action: SessionStateMachine.Action) {
        switch action {
        case .connected(let frame, let version, let heartbeat, let login, let clientID, let passcode):
            self.version = version
            self.parser.version = version
            if let authentication = self.settings.authentication {
                self.authenticate(login: login, passcode: passcode ?? self.handshakeToken, with: authentication) { user in
                    self.roles = user.roles
                    self.expire(at: user.expires)
                    self.connected(frame, heartbeat: heartbeat, login: user.name.isEmpty ? nil : user.name, clientID: clientID)
                }
                return
            }
            self.connected(frame, heartbeat: heartbeat, login: login, clientID: clientID)
        case .subscribe(_, let destination, _, _, _, _, _, let receipt) where !self.mayAccess(.subscribe, destination, receipt: receipt):
            return
        case .subscribe(let id, let destination, let ackMode, _, false, let options, let maxRate, let receipt)
        where self.isStream(destination, options):
            self.subscribeStream(id: id, destination: destination, ackMode: ackMode, options: options, maxRate: maxRate, receipt: receipt)
        case .subscribe(let id, let destination, let ackMode, let prefetch, let durable, _, let maxRate, let receipt):
            guard self.subscribe(
                id: id, destination: destination, ackMode: ackMode, prefetch: prefetch, durable: durable, maxRate: maxRate, receipt: receipt
            ) else { return }
            self.sendReceipt(receipt)
        case .unsubscribe(let id, let durable, let receipt):
            if let subscription = self.subscriptions.removeValue(forKey: id) {
                if subscription.ackMode != .auto { self.clientAckTopicSubscriptions -= 1 }
                self.loop.unsubscribe(subscription)
                self.backlog?.remove(subscription)
                if subscription.cursor != nil { self.leaveRoom(subscription) }
            } else {
                self.unsubscribeQueue(id: id, endDurable: durable)
            }
            self.sendReceipt(receipt)
        case .refreshToken(let token, let receipt):
            self.refreshToken(token, receipt: receipt)
        case .execute(let work, let receipt):
            self.execute(work, receipt: receipt)
        case .receipt(let receipt):
            self.sendReceipt(receipt)
        case .disconnect(let receipt):
            self.acceptingFrames = false
            // Not behind what a slow client is still owed: that is dropped at the close anyway.
            if let receipt { self.sendReceipt(receipt, headers: [], inOrder: false) }
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

    /// `text` with control characters (a client's NUL or escape sequence quoted in an ERROR) written as `\xNN`, so
    /// they neither end the frame early nor reach the client's terminal or logs.
    static func printable(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else { return text }
        var result = ""
        for scalar in text.unicodeScalars {
            if scalar.value < 0x20 || scalar.value == 0x7F {
                result += "\\x" + String(format: "%02X", scalar.value)
            } else {
                result.unicodeScalars.append(scalar)
            }
        }
        return result
    }

    /// The session starts: CONNECTED, heart-beats, and the login naming the user.
    private func connected(_ frame: STOMPFrame, heartbeat: SessionStateMachine.NegotiatedHeartbeat, login: String?, clientID: String?) {
        self.connectDeadline = nil
        if self.kind != .internal {
            self.sessionOpen = true
            self.metrics.sessions += 1
        }
        self.login = login
        self.clientID = clientID
        if let login, !login.isEmpty { self.authorHeaders = [("user-name", login)] }
        self.writeFrame(frame)
        self.startHeartbeats(heartbeat)
    }

    /// Sends ERROR (`message`, `receipt-id` when given, a text body when there is detail), then closes.
    func fail(_ message: String, receiptID: String?, detail: String?, extraHeaders: [(String, String)] = []) {
        var headers: STOMPHeaders = [:]
        for (name, value) in extraHeaders { headers.add(name, value) }
        headers.add("message", Self.printable(message))
        if let receiptID { headers.add("receipt-id", receiptID) }
        var body = ByteBuffer()
        if let detail {
            headers.add("content-type", "text/plain")
            body.writeString(detail)
        }
        self.logger.debug("protocol error", metadata: self.logMetadata.merging(["error": "\(message)"]) { $1 })
        self.countError(message)
        self.writeFrame(STOMPFrame(.error, headers: headers, body: body), inOrder: false)
        self.close(.protocolError)
    }

    /// Carries out a SEND, ACK/NACK or COMMIT, then answers `receipt`: once every queue that got a message accepted
    /// it (durably, for a persistent one) and every ACK of a stored message is durable; a refusal is an ERROR with
    /// the receipt id instead. Without queues involved the RECEIPT goes at once.
    private func execute(_ work: [SessionStateMachine.Work], receipt: String?) {
        // All or nothing: a transaction with one forbidden SEND does none of them.
        for case .publish(let publish) in work where !self.mayAccess(.send, publish.destination, receipt: receipt) { return }
        // Topic SENDs need no queue bookkeeping (and no `QueueState` allocated for it).
        let touchesQueues = work.contains { item in
            guard case .publish(let publish) = item else { return true }
            // Presence updates may be refused and room SENDs wait for the store: they need a token like queue SENDs.
            return publish.destination.hasPrefix(QueueName.prefix) || publish.destination.hasPrefix(TempQueueName.prefix)
                || publish.destination.hasPrefix(RoomName.presencePrefix) || publish.destination.hasPrefix(RoomName.roomPrefix)
                || self.loop.topicHasHistory(publish.destination)
        }
        guard touchesQueues else {
            for item in work {
                if case .publish(let publish) = item { self.publish(publish, token: 0, wantsReceipt: false) }
            }
            self.sendReceipt(receipt)
            return
        }
        let token = self.queue.makeToken()
        // The wait starts at 1 for this call itself, released at the end, so replies arriving early cannot
        // complete it before every piece of work was sent on its way.
        if let receipt { self.queue.receiptWaits[token] = (receipt, 1) }
        for item in work {
            guard !self.closed else { return }
            switch item {
            case .publish(let publish):
                self.publish(publish, token: token, wantsReceipt: receipt != nil)
            case .acknowledge(let acknowledge):
                guard self.acknowledge(acknowledge, token: token, receipt: receipt) else { return }
            }
        }
        if receipt != nil { self.enqueueFinished(token: token, refusal: nil) }
    }

    private func publish(_ publish: SessionStateMachine.Publish, token: UInt64, wantsReceipt: Bool) {
        self.metrics.received[DestinationKind(publish.destination).rawValue] &+= 1
        if publish.destination.hasPrefix(RoomName.presencePrefix) {
            self.updatePresence(publish, token: token, wantsReceipt: wantsReceipt)
            return
        }
        var destination = publish.destination
        if destination.hasPrefix(TempQueueName.prefix) {
            destination = TempQueueName.queue(session: self.sessionID, name: destination.dropFirst(TempQueueName.prefix.count))
        }
        var headers = publish.headers
        self.rewriteReplyTo(&headers)
        let now = WallClock.milliseconds()
        if let key = headers["idempotency-key"] {
            guard self.loop.idempotency.firstUse(key: key, destination: destination, now: now) else {
                // A repeat within the window: answered like the first, delivered nothing.
                return
            }
            if destination.hasPrefix(QueueName.prefix) { self.queue.idempotencyKeys[token, default: []].append((destination, key)) }
        }
        self.messageCounter &+= 1
        let messageID = "\(self.sessionID)-\(self.messageCounter)"
        if destination.hasPrefix(RoomName.roomPrefix) || self.loop.topicHasHistory(destination) {
            self.publishToStream(destination, headers, publish.body, messageID: messageID, token: token, wantsReceipt: wantsReceipt)
            return
        }
        let message = BrokerMessage(
            destination: destination, messageID: messageID, sendHeaders: headers, body: publish.body,
            allocator: self.settings.allocator, serverHeaders: self.authorHeaders,
            delivery: destination.hasPrefix(TopicName.prefix) ? self.loop.deliveryPolicy(for: destination) : .standard
        )
        if destination.hasPrefix(QueueName.prefix) {
            let reply = QueueReply(loopIndex: self.loop.index, sink: self, token: token, wantsSuccess: wantsReceipt)
            if wantsReceipt { self.queue.expectReply(token) }
            let expiresAt = SessionStateMachine.expiry(of: headers, now: now)
            self.loop.enqueue(QueueEnqueue(destination: destination, message: message, expiresAt: expiresAt, reply: reply))
            return
        }
        if let (login, rest) = UserDestination.sendTarget(destination) {
            self.loop.publish(message, words: UserDestination.words(login: login, rest: rest))
            return
        }
        guard let words = try? TopicName.publishWords(destination) else { return }
        self.loop.publish(message, words: words)
    }

    func sendReceipt(_ receipt: String?) {
        guard let receipt else { return }
        self.sendReceipt(receipt, headers: [])
    }

    func sendReceipt(_ receipt: String, headers: [(name: String, value: String)]) {
        self.sendReceipt(receipt, headers: headers, inOrder: true)
    }

    private func sendReceipt(_ receipt: String, headers: [(name: String, value: String)], inOrder: Bool) {
        // Encoded straight into one buffer (a persistent SEND gets one per message): no header list, no frame.
        var bytes = self.settings.allocator.buffer(capacity: 24 + receipt.utf8.count)
        bytes.writeStaticString("RECEIPT\n")
        STOMPFrameEncoder.writeHeader("receipt-id", receipt, to: &bytes, version: self.version)
        for (name, value) in headers { STOMPFrameEncoder.writeHeader(name, value, to: &bytes, version: self.version) }
        bytes.writeStaticString("\n\0")
        self.writeEncoded(bytes, isText: true, inOrder: inOrder)
    }

    func writeFrame(_ frame: STOMPFrame, inOrder: Bool = true) {
        let bytes = STOMPFrameEncoder.encode(frame, version: self.version, allocator: self.settings.allocator)
        self.writeEncoded(bytes, isText: UTF8Check.isValid(frame.body), inOrder: inOrder)
    }

    /// Writes one encoded frame (not a delivery) and flushes it at the end of the loop tick. While the client is slow
    /// it waits behind what is held for it (`inOrder`: a RECEIPT after the history it follows), unless it is the
    /// last frame before closing.
    private func writeEncoded(_ bytes: ByteBuffer, isText: Bool, inOrder: Bool = true) {
        guard let transport = self.transport else { return }
        if inOrder, let backlog = self.backlog {
            backlog.append(head: nil, body: bytes, isText: isText)
            self.checkBacklogBudget()
            return
        }
        transport.write(head: nil, body: bytes, isText: isText)
        self.wroteSinceTick = true
        self.scheduleFlush()
    }

    func scheduleFlush() {
        self.loop.scheduleFlush(self)
    }

    // MARK: MessageSink

    func deliver(_ messages: ArraySlice<BrokerMessage>, to subscription: TopicSubscription) {
        guard !self.closed, let transport = self.transport else { return }
        if self.backlog != nil || subscription.limiter != nil {
            self.deliverPaced(messages, to: subscription)
            return
        }
        self.metrics.topicDeliveries &+= messages.count
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
        if transport.isWritable {
            self.settleAutoDeliveries()
        } else if !(self.queueBox?.state.autoSettles.isEmpty ?? true) {
            // Settled by the clock once the socket drains (`clockTick`).
            self.clock.add(self)
        }
        if !transport.isWritable && self.backlog == nil {
            // The socket is full: from now on deliveries are held per their slow-consumer policies until it drains
            // (`transportWritable`).
            self.backlog = OutboundBacklog()
        }
    }
}
