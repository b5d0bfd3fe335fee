import NIOCore
import StarlingBroker
import StarlingSTOMP

/// The STOMP session protocol (STOMP 1.2 "Connecting", "Client Frames", "Heart-beating", with the 1.0/1.1
/// differences), as a state machine with no I/O: each client frame goes in, one `Action` comes out, and the
/// connection carries it out. Destination routing and socket work stay outside.
struct SessionStateMachine {
    struct Configuration {
        var serverName = "Starling/0.1"
        var supportedVersions: [STOMPVersion] = [.v1_0, .v1_1, .v1_2]
        /// Server heart-beat (`cx,cy` of CONNECTED): the fastest we send, the fastest we want to receive, in ms.
        var heartbeat = Heartbeat(send: 10_000, receive: 10_000)
        var maxSubscriptions = 1024
        /// Bytes of `x-presence-*` metadata (keys and values) a room SUBSCRIBE or presence SEND may carry.
        var maxPresenceMetaBytes = RoomLimits().maxMetaBytes
        var maxTransactions = 16
        var maxFramesPerTransaction = 1024
        /// Limits announced in CONNECTED (informational headers, as `x-max-*`).
        var announcedLimits: [(String, String)] = []
    }

    struct Heartbeat: Equatable, Sendable {
        /// Interval in ms at which one side sends (0 = never).
        var send: Int
        /// Interval in ms at which one side wants to receive (0 = never).
        var receive: Int
    }

    /// What was agreed in CONNECT/CONNECTED: the server sends every `send` ms and expects bytes every `receive` ms.
    struct NegotiatedHeartbeat: Equatable, Sendable {
        var send: Int
        var receive: Int
    }

    /// What a SUBSCRIBE to `/room/` or `/presence/` asks for (docs/rooms.md).
    struct RoomOptions: Equatable {
        /// `x-presence-<key>` headers, without the prefix.
        var meta: [String: String] = [:]
        /// `x-history`.
        var history: Int?
        /// `x-resume-from:<epoch>:<offset>`.
        var resumeEpoch: String?
        var resumeOffset: UInt64 = 0
        /// `x-presence-mode:count` on a presence SUBSCRIBE.
        var countOnly = false
    }

    struct Publish: Equatable {
        var destination: String
        var headers: STOMPHeaders
        var body: ByteBuffer
    }

    /// An ACK (`positive`) or NACK. `id` is the MESSAGE's `ack` header (1.2) or its `message-id` (1.0/1.1).
    struct Acknowledge: Equatable {
        var id: String
        var subscription: String?
        var positive: Bool
        /// NACK only: false (`requeue:false`) sends the message to the dead-letter queue at once.
        var requeue = true
    }

    /// What a SEND, ACK, NACK or COMMIT asks the connection to do, in order.
    enum Work: Equatable {
        case publish(Publish)
        case acknowledge(Acknowledge)
    }

    enum Action: Equatable {
        /// Send CONNECTED, switch the parser to `version`, start heart-beats.
        /// `login` and `clientID` are the CONNECT's `login` and `client-id` headers.
        /// `passcode` is for the authenticator and is never logged.
        case connected(
            STOMPFrame, version: STOMPVersion, heartbeat: NegotiatedHeartbeat, login: String? = nil, clientID: String? = nil,
            passcode: String? = nil
        )
        /// `prefetch`: the SUBSCRIBE's `prefetch-count` (or `activemq.prefetchSize`), for queues.
        /// `durable`: `durable:true` or `persistent:true` on a topic SUBSCRIBE (the subscription outlives the connection).
        /// `room`: the room options of a `/room/` or `/presence/` SUBSCRIBE.
        /// `maxRate`: a topic SUBSCRIBE's `x-max-rate` (updates per second per destination and key; 0 = unlimited).
        case subscribe(
            id: String, destination: String, ackMode: AckMode, prefetch: Int?, durable: Bool = false, room: RoomOptions? = nil,
            maxRate: Double = 0, receipt: String?
        )
        /// `durable`: the UNSUBSCRIBE also ends a durable subscription (otherwise it keeps collecting messages).
        case unsubscribe(id: String, durable: Bool = false, receipt: String?)
        /// Carry out in order (a SEND, an ACK/NACK, or a COMMIT's frames), then answer the receipt if any.
        case execute([Work], receipt: String?)
        /// Nothing to do but answer the receipt (BEGIN, ABORT, a SEND or ACK inside a transaction).
        case receipt(String?)
        /// Send RECEIPT (if any), then close gracefully.
        case disconnect(receipt: String?)
        /// A SEND to `/control/token`: replace the session's JWT (body or `passcode` header) before it expires.
        case refreshToken(String, receipt: String?)
        /// Send ERROR (with `receipt-id` when the frame had `receipt`), then close.
        case error(message: String, receiptID: String?, detail: String?)
        /// No common protocol version: ERROR with `version` listing ours (STOMP 1.2 "Protocol Negotiation"), then close.
        case unsupportedVersion(supported: String, receiptID: String?)
    }

    private enum State {
        case awaitingConnect
        case connected(STOMPVersion)
        case closed
    }

    /// A `Configuration` shared by every session made from one server configuration (built once per start or
    /// reload): an idle connection keeps a reference to it, not a copy.
    final class SharedConfiguration: Sendable {
        let value: Configuration
        init(_ value: Configuration) { self.value = value }
    }

    private var state = State.awaitingConnect
    private let shared: SharedConfiguration
    private var configuration: Configuration { self.shared.value }
    let sessionID: String
    /// The highest version this transport may speak (a WebSocket subprotocol can cap it); nil: any.
    private let maxVersion: STOMPVersion?
    private var subscriptions: [String: String] = [:]  // id -> destination
    /// The destinations of the session's subscriptions (each once per subscription), for re-checking access rules.
    var subscribedDestinations: Dictionary<String, String>.Values { self.subscriptions.values }
    private var transactions: [String: [Work]] = [:]

    init(configuration: SharedConfiguration, sessionID: String, maxVersion: STOMPVersion? = nil) {
        self.shared = configuration
        self.sessionID = sessionID
        self.maxVersion = maxVersion
    }

    init(configuration: Configuration, sessionID: String) {
        self.init(configuration: SharedConfiguration(configuration), sessionID: sessionID)
    }

    private var supportedVersions: [STOMPVersion] {
        guard let maxVersion = self.maxVersion else { return self.configuration.supportedVersions }
        return self.configuration.supportedVersions.filter { $0 <= maxVersion }
    }

    var version: STOMPVersion? {
        if case .connected(let version) = self.state { return version }
        return nil
    }

    mutating func receive(_ frame: STOMPFrame) -> Action {
        let receipt = frame.headers["receipt"]
        switch self.state {
        case .closed:
            return .error(message: "the session is closed", receiptID: receipt, detail: nil)
        case .awaitingConnect:
            guard frame.command == .connect || frame.command == .stomp else {
                return self.fail("expected CONNECT or STOMP, got \(frame.command.rawValue)", receipt: receipt)
            }
            return self.connect(frame)
        case .connected(let version):
            return self.connected(frame, version: version, receipt: receipt)
        }
    }

    /// Turns a codec error into the ERROR action (one mapping for every parse failure, STYLE.md rule 8).
    mutating func parseFailed(_ error: any Error, receipt: String?) -> Action {
        let message = (error as? STOMPParseError)?.description ?? "malformed frame"
        return self.fail(message, receipt: receipt)
    }

    private mutating func fail(_ message: String, receipt: String?, detail: String? = nil) -> Action {
        self.state = .closed
        return .error(message: message, receiptID: receipt, detail: detail)
    }

    // MARK: CONNECT

    private mutating func connect(_ frame: STOMPFrame) -> Action {
        // STOMP 1.2 "Protocol Negotiation": no accept-version means 1.0.
        let offered = frame.headers["accept-version"].map { $0.split(separator: ",").map { $0.trimmingASCIISpaces() } } ?? ["1.0"]
        let common = self.supportedVersions.filter { offered.contains($0.rawValue) }
        guard let version = common.max() else {
            self.state = .closed
            let supported = self.supportedVersions.map(\.rawValue).joined(separator: ",")
            return .unsupportedVersion(supported: supported, receiptID: frame.headers["receipt"])
        }
        var negotiated = NegotiatedHeartbeat(send: 0, receive: 0)
        if version >= .v1_1, let value = frame.headers["heart-beat"] {
            guard let client = Self.parseHeartbeat(value) else {
                return self.fail("invalid heart-beat header '\(value)': expected two non-negative integers 'cx,cy'", receipt: frame.headers["receipt"])
            }
            // STOMP 1.2 "Heart-beating": each direction uses the larger of what one side can do and the other wants.
            let server = self.configuration.heartbeat
            negotiated.send = (client.receive == 0 || server.send == 0) ? 0 : max(client.receive, server.send)
            negotiated.receive = (client.send == 0 || server.receive == 0) ? 0 : max(client.send, server.receive)
        }
        var headers: STOMPHeaders = [:]
        headers.add("version", version.rawValue)
        if version >= .v1_1 {
            headers.add("heart-beat", "\(self.configuration.heartbeat.send),\(self.configuration.heartbeat.receive)")
        }
        headers.add("server", self.configuration.serverName)
        headers.add("session", self.sessionID)
        for (name, value) in self.configuration.announcedLimits { headers.add(name, value) }
        self.state = .connected(version)
        return .connected(
            STOMPFrame(.connected, headers: headers), version: version, heartbeat: negotiated,
            login: frame.headers["login"], clientID: frame.headers["client-id"],
            passcode: frame.headers["passcode"] ?? Self.bearer(frame.headers["authorization"])
        )
    }

    /// Where a session sends a fresh JWT (issue 9: token refresh without reconnecting).
    static let tokenDestination = "/control/token"

    /// The token of an `authorization:Bearer <token>` header.
    static func bearer(_ value: String?) -> String? {
        guard let value, value.lowercased().hasPrefix("bearer ") else { return nil }
        return value.dropFirst(7).trimmingASCIISpaces()
    }

    static func parseHeartbeat(_ value: String) -> Heartbeat? {
        let parts = value.split(separator: ",", omittingEmptySubsequences: false)
        guard parts.count == 2,
              let send = Int(parts[0].trimmingASCIISpaces()), let receive = Int(parts[1].trimmingASCIISpaces()),
              send >= 0, receive >= 0
        else { return nil }
        return Heartbeat(send: send, receive: receive)
    }

    // MARK: connected

    private mutating func connected(_ frame: STOMPFrame, version: STOMPVersion, receipt: String?) -> Action {
        switch frame.command {
        case .connect, .stomp:
            return self.fail("already connected", receipt: receipt)
        case .send:
            return self.send(frame, receipt: receipt)
        case .subscribe:
            return self.subscribe(frame, version: version, receipt: receipt)
        case .unsubscribe:
            return self.unsubscribe(frame, version: version, receipt: receipt)
        case .ack, .nack:
            return self.acknowledge(frame, version: version, receipt: receipt)
        case .begin:
            guard let id = frame.headers["transaction"] else { return self.missing("transaction", frame, receipt) }
            guard self.transactions[id] == nil else { return self.fail("transaction '\(id)' is already open", receipt: receipt) }
            guard self.transactions.count < self.configuration.maxTransactions else {
                return self.fail("too many open transactions (limit \(self.configuration.maxTransactions))", receipt: receipt)
            }
            self.transactions[id] = []
            return .receipt(receipt)
        case .commit:
            guard let id = frame.headers["transaction"] else { return self.missing("transaction", frame, receipt) }
            guard let work = self.transactions.removeValue(forKey: id) else {
                return self.fail("unknown transaction '\(id)'", receipt: receipt)
            }
            return .execute(work, receipt: receipt)
        case .abort:
            guard let id = frame.headers["transaction"] else { return self.missing("transaction", frame, receipt) }
            guard self.transactions.removeValue(forKey: id) != nil else {
                return self.fail("unknown transaction '\(id)'", receipt: receipt)
            }
            return .receipt(receipt)
        case .disconnect:
            self.state = .closed
            return .disconnect(receipt: receipt)
        case .connected, .message, .receipt, .error:
            return self.fail("\(frame.command.rawValue) is a server frame; a client may not send it", receipt: receipt)
        }
    }

    private mutating func missing(_ header: String, _ frame: STOMPFrame, _ receipt: String?) -> Action {
        self.fail("\(frame.command.rawValue) frame has no '\(header)' header", receipt: receipt)
    }

    private mutating func send(_ frame: STOMPFrame, receipt: String?) -> Action {
        guard let destination = frame.headers["destination"] else { return self.missing("destination", frame, receipt) }
        if destination == Self.tokenDestination {
            guard frame.headers["transaction"] == nil else { return self.fail("a token refresh cannot be part of a transaction", receipt: receipt) }
            let token = frame.headers["passcode"] ?? String(buffer: frame.body).trimmingCharacters(in: .whitespacesAndNewlines)
            return .refreshToken(token, receipt: receipt)
        }
        if let problem = Self.destinationProblem(destination, publishing: true) {
            return self.fail(problem, receipt: receipt)
        }
        if destination.hasPrefix(QueueName.prefix), let problem = Self.expiryProblem(frame.headers) {
            return self.fail(problem, receipt: receipt)
        }
        if destination.hasPrefix(RoomName.presencePrefix) {
            let meta = Dictionary(Self.presenceMeta(frame.headers), uniquingKeysWith: { first, _ in first })
            if let problem = Self.presenceMetaProblem(meta, limit: self.configuration.maxPresenceMetaBytes) {
                return self.fail(problem.description, receipt: receipt)
            }
        }
        let publish = Publish(destination: destination, headers: frame.headers, body: frame.body)
        return self.executeOrHold(.publish(publish), frame: frame, receipt: receipt)
    }

    /// Work inside a transaction waits for its COMMIT (and is dropped by ABORT or disconnect); other work is done now.
    private mutating func executeOrHold(_ work: Work, frame: STOMPFrame, receipt: String?) -> Action {
        guard let transaction = frame.headers["transaction"] else { return .execute([work], receipt: receipt) }
        guard self.transactions[transaction] != nil else {
            return self.fail("unknown transaction '\(transaction)'", receipt: receipt)
        }
        guard self.transactions[transaction]!.count < self.configuration.maxFramesPerTransaction else {
            return self.fail("too many frames in transaction '\(transaction)' (limit \(self.configuration.maxFramesPerTransaction))", receipt: receipt)
        }
        self.transactions[transaction]!.append(work)
        return .receipt(receipt)
    }

    private mutating func subscribe(_ frame: STOMPFrame, version: STOMPVersion, receipt: String?) -> Action {
        guard let destination = frame.headers["destination"] else { return self.missing("destination", frame, receipt) }
        // STOMP 1.0 makes `id` optional; the destination then names the subscription.
        guard let id = frame.headers["id"] ?? (version == .v1_0 ? destination : nil) else {
            return self.missing("id", frame, receipt)
        }
        let ackMode: AckMode
        if let value = frame.headers["ack"] {
            guard let mode = AckMode(rawValue: value) else {
                return self.fail("invalid ack mode '\(value)': expected auto, client or client-individual", receipt: receipt)
            }
            ackMode = mode
        } else {
            ackMode = .auto
        }
        if let problem = Self.destinationProblem(destination, publishing: false) {
            return self.fail(problem, receipt: receipt)
        }
        var prefetch: Int?
        for name in ["prefetch-count", "activemq.prefetchSize"] {
            guard let value = frame.headers[name] else { continue }
            guard let count = Int(value), count >= 0 else {
                return self.fail("invalid \(name) '\(value)': expected a non-negative integer (0 = unlimited)", receipt: receipt)
            }
            prefetch = count
            break
        }
        let durable = Self.isDurable(frame.headers)
        if durable && !destination.hasPrefix(TopicName.prefix) {
            return self.fail("durable subscriptions are for /topic/ destinations; '\(destination)' is not one", receipt: receipt)
        }
        guard self.subscriptions[id] == nil else {
            return self.fail("subscription id '\(id)' is already in use on this connection", receipt: receipt)
        }
        guard self.subscriptions.count < self.configuration.maxSubscriptions else {
            return self.fail("too many subscriptions on this connection (limit \(self.configuration.maxSubscriptions))", receipt: receipt)
        }
        var room: RoomOptions?
        let readsHistory = destination.hasPrefix(TopicName.prefix) && (frame.headers.contains("x-history") || frame.headers.contains("x-resume-from"))
        if RoomName.name(of: destination) != nil || readsHistory {
            let presence = destination.hasPrefix(RoomName.presencePrefix)
            switch Self.roomOptions(frame.headers, presence: presence, maxMetaBytes: self.configuration.maxPresenceMetaBytes) {
            case .success(let options): room = options
            case .failure(let problem): return self.fail(problem.description, receipt: receipt)
            }
        }
        var maxRate = 0.0
        if let value = frame.headers["x-max-rate"] {
            guard destination.hasPrefix(TopicName.prefix), !durable else {
                return self.fail("x-max-rate applies to (non-durable) /topic/ subscriptions, not '\(destination)'", receipt: receipt)
            }
            guard let rate = Self.rate(value) else {
                return self.fail(
                    "invalid x-max-rate '\(value)': \(Self.rateExpectation)",
                    receipt: receipt
                )
            }
            maxRate = rate
        }
        self.subscriptions[id] = destination
        return .subscribe(
            id: id, destination: destination, ackMode: ackMode, prefetch: prefetch, durable: durable, room: room, maxRate: maxRate,
            receipt: receipt
        )
    }

    private mutating func unsubscribe(_ frame: STOMPFrame, version: STOMPVersion, receipt: String?) -> Action {
        guard let id = frame.headers["id"] ?? (version == .v1_0 ? frame.headers["destination"] : nil) else {
            return self.missing("id", frame, receipt)
        }
        guard self.subscriptions.removeValue(forKey: id) != nil else {
            return self.fail("no subscription with id '\(id)' on this connection", receipt: receipt)
        }
        return .unsubscribe(id: id, durable: Self.isDurable(frame.headers), receipt: receipt)
    }

    /// `durable:true` (ActiveMQ) or `persistent:true` (RabbitMQ).
    static func isDurable(_ headers: STOMPHeaders) -> Bool {
        headers["durable"] == "true" || headers["persistent"] == "true"
    }

    private mutating func acknowledge(_ frame: STOMPFrame, version: STOMPVersion, receipt: String?) -> Action {
        // STOMP 1.2 ACK/NACK carry `id` (the MESSAGE's `ack`); 1.1 `message-id` + `subscription`; 1.0 `message-id`.
        let id: String
        switch version {
        case .v1_2:
            guard let value = frame.headers["id"] else { return self.missing("id", frame, receipt) }
            id = value
        case .v1_1:
            guard let value = frame.headers["message-id"] else { return self.missing("message-id", frame, receipt) }
            guard frame.headers["subscription"] != nil else { return self.missing("subscription", frame, receipt) }
            id = value
        case .v1_0:
            guard frame.command == .ack else { return self.fail("NACK is not part of STOMP 1.0", receipt: receipt) }
            guard let value = frame.headers["message-id"] else { return self.missing("message-id", frame, receipt) }
            id = value
        }
        var acknowledge = Acknowledge(id: id, subscription: frame.headers["subscription"], positive: frame.command == .ack)
        if frame.command == .nack, let value = frame.headers["requeue"] {
            switch value {
            case "true": acknowledge.requeue = true
            case "false": acknowledge.requeue = false
            default: return self.fail("invalid requeue header '\(value)': expected true or false", receipt: receipt)
            }
        }
        return self.executeOrHold(.acknowledge(acknowledge), frame: frame, receipt: receipt)
    }

    /// Expiry headers of a SEND: `expires` (absolute, ms since 1970, 0 = never, as ActiveMQ Artemis) and `ttl` or
    /// `expiration` (relative ms, as RabbitMQ). The earliest wins.
    static let expiryHeaders = ["expires", "ttl", "expiration"]

    static func expiryProblem(_ headers: STOMPHeaders) -> String? {
        for name in Self.expiryHeaders {
            if let value = headers[name], Int64(value).map({ $0 < 0 }) ?? true {
                return "invalid \(name) header '\(value)': expected a non-negative integer (milliseconds)"
            }
        }
        return nil
    }

    /// When a message with `headers` expires (wall-clock ms), or nil for never. Headers were checked by `expiryProblem`.
    static func expiry(of headers: STOMPHeaders, now: Int64) -> Int64? {
        var expiry: Int64?
        if let value = headers["expires"].flatMap({ Int64($0) }), value > 0 { expiry = value }
        for name in ["ttl", "expiration"] {
            if let value = headers[name].flatMap({ Int64($0) }) {
                let (sum, overflow) = now.addingReportingOverflow(value)
                let at = overflow ? Int64.max : sum
                expiry = min(expiry ?? at, at)
            }
        }
        return expiry
    }
}

extension Substring {
    func trimmingASCIISpaces() -> String {
        String(self.drop(while: { $0 == " " }).reversed().drop(while: { $0 == " " }).reversed())
    }
}
