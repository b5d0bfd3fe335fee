/// What a run does: the scenario, the target, and the knobs of CONTRACT.md. Built by the executable from its
/// command line (and by tests directly); everything here is plain data.
public enum Scenario: String, Sendable, CaseIterable, Codable {
    case fanout
    case rooms
    case queue
    case connections
}

/// STOMP acknowledgement mode of the queue consumers (STOMP 1.2 "SUBSCRIBE ack Header").
public enum AckMode: String, Sendable, CaseIterable, Codable {
    case auto
    case clientIndividual = "client-individual"
}

/// A `ws://host:port/path` URL, split into what the TCP connect and the HTTP upgrade need.
public struct TargetURL: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public var path: String

    public init(host: String, port: Int, path: String) {
        self.host = host
        self.port = port
        self.path = path
    }

    /// Parses `ws://host[:port][/path]`; the port defaults to 80 and the path to `/`. `wss://` is refused
    /// (the load generator has no TLS). Returns nil with a reason for anything else.
    public static func parse(_ text: String) -> Result<TargetURL, LoadtestError> {
        guard text.hasPrefix("ws://") else {
            if text.hasPrefix("wss://") {
                return .failure(.usage("--url: wss:// is not supported (no TLS in the load generator)"))
            }
            return .failure(.usage("--url must start with ws:// (got '\(text)')"))
        }
        let rest = text.dropFirst(5)
        let authority = rest.prefix { $0 != "/" }
        let path = rest.dropFirst(authority.count)
        var host = String(authority)
        var port = 80
        if authority.hasPrefix("[") {
            // [IPv6]:port
            guard let close = authority.firstIndex(of: "]") else { return .failure(.usage("--url: bad IPv6 host")) }
            host = String(authority[authority.index(after: authority.startIndex)..<close])
            let after = authority[authority.index(after: close)...]
            if after.hasPrefix(":") {
                guard let value = Int(after.dropFirst()), (1...65535).contains(value) else {
                    return .failure(.usage("--url: bad port in '\(text)'"))
                }
                port = value
            }
        } else if let colon = authority.lastIndex(of: ":") {
            host = String(authority[..<colon])
            guard let value = Int(authority[authority.index(after: colon)...]), (1...65535).contains(value) else {
                return .failure(.usage("--url: bad port in '\(text)'"))
            }
            port = value
        }
        guard !host.isEmpty else { return .failure(.usage("--url: missing host in '\(text)'")) }
        return .success(TargetURL(host: host, port: port, path: path.isEmpty ? "/" : String(path)))
    }

    /// The `Host` header value (RFC 7230 §5.4): the port only when it is not the default.
    public var hostHeader: String {
        let name = self.host.contains(":") ? "[\(self.host)]" : self.host
        return self.port == 80 ? name : "\(name):\(self.port)"
    }

    public var description: String { "ws://\(self.hostHeader)\(self.path)" }
}

/// Everything one run needs. Defaults are the executable's defaults.
public struct LoadtestConfiguration: Sendable {
    public var scenario: Scenario
    public var url: TargetURL
    public var login: String?
    public var passcode: String?
    /// CONNECT `host` header (virtual host); defaults to the URL's host.
    public var virtualHost: String?
    public var deflate = false
    public var durationSeconds = 10.0
    public var warmupSeconds = 2.0
    public var payloadBytes = 100
    public var serverPID: Int32?
    public var sourceAddresses = 1
    public var quiet = false

    // fanout / queue / rooms
    public var publishers = 1
    public var topics = 1
    public var subscribers = 100
    public var rooms = 10
    public var members = 10
    public var consumers = 1
    public var queues = 1
    public var ackMode = AckMode.auto
    /// queue: SENDs carry `persistent:true` and a `receipt` (a broker stores the message before answering).
    public var persistent = false
    /// rooms: `/room/<name>` destinations (Starling's rooms) instead of `/topic/<name>`.
    public var roomDestinations = false
    /// Messages/s: total for fanout and queue, per member for rooms. 0 = as fast as possible.
    public var rate = 0.0
    /// `--rate 0` flow window: messages in flight (sent, not yet received) per subscription, summed over all.
    public var inFlightPerSubscription = 32
    /// fanout `--stalled-percent P`: P% of each topic's subscribers stop reading after their SUBSCRIBE's RECEIPT.
    /// nil when the option was not given (then the result has no `stalled` and no RSS series); 0 reports both
    /// with no stalled subscriber.
    public var stalledPercent: Double?
    /// How long, at most, the stalled subscribers read their backlog after the run (to see which ones the broker
    /// closed: a closed socket shows only once what was queued before the close has been read).
    public var stalledDrainSeconds = 10.0

    // connections
    public var connections = 1000
    public var heartbeatMilliseconds = 10_000
    public var holdSeconds = 10.0
    public var workers = 1
    /// Set in a child process started by `--workers`: it reports to its parent over stdin/stdout.
    public var isWorker = false
    /// A worker's first connection number (so workers spread over the source addresses like one process would).
    public var workerIndex = 0

    /// Most connections a single process opens (the machine allows ~20,000 open files per process).
    public static let maxConnectionsPerProcess = 19_000
    /// At most this many connections are being set up at once (TCP + upgrade + CONNECT).
    public var connectConcurrency = 256
    /// How long to wait for a TCP connect, the 101 and the CONNECTED, each.
    public var connectTimeoutSeconds = 10.0

    public init(scenario: Scenario, url: TargetURL) {
        self.scenario = scenario
        self.url = url
    }

    /// Checks the combinations; the message names the option at fault.
    public func validate() throws(LoadtestError) {
        func positive(_ value: Int, _ name: String) throws(LoadtestError) {
            guard value > 0 else { throw .usage("\(name) must be at least 1") }
        }
        guard self.durationSeconds > 0 else { throw .usage("--duration must be > 0") }
        guard self.warmupSeconds >= 0 else { throw .usage("--warmup must be >= 0") }
        guard self.payloadBytes >= 0 && self.payloadBytes <= 1 << 20 else { throw .usage("--payload must be 0...1048576") }
        guard self.rate >= 0 else { throw .usage("--rate must be >= 0") }
        guard self.inFlightPerSubscription >= 1 else { throw .usage("--in-flight must be at least 1") }
        guard (1...250).contains(self.sourceAddresses) else { throw .usage("--source-addresses must be 1...250") }
        if let percent = self.stalledPercent {
            guard self.scenario == .fanout else { throw .usage("--stalled-percent is a fanout option") }
            guard percent >= 0 && percent < 100 else { throw .usage("--stalled-percent must be 0 ... <100") }
            guard StalledSelection(subscribers: self.subscribers, percent: percent).healthy > 0 else {
                throw .usage("--stalled-percent \(percent) leaves no healthy subscriber of \(self.subscribers)")
            }
        }
        switch self.scenario {
        case .fanout:
            try positive(self.publishers, "--publishers")
            try positive(self.topics, "--topics")
            try positive(self.subscribers, "--subscribers")
            try self.checkSockets(self.publishers + self.topics * self.subscribers)
        case .rooms:
            try positive(self.rooms, "--rooms")
            try positive(self.members, "--members")
            try self.checkSockets(self.rooms * self.members)
        case .queue:
            try positive(self.publishers, "--producers")
            try positive(self.consumers, "--consumers")
            try positive(self.queues, "--queues")
            try self.checkSockets(self.publishers + self.consumers)
        case .connections:
            try positive(self.connections, "--connections")
            try positive(self.workers, "--workers")
            guard self.heartbeatMilliseconds >= 0 else { throw .usage("--heartbeat must be >= 0") }
            guard self.holdSeconds >= 0 else { throw .usage("--hold must be >= 0") }
            let share = (self.connections + self.workers - 1) / self.workers
            guard share <= Self.maxConnectionsPerProcess else {
                let needed = (self.connections + Self.maxConnectionsPerProcess - 1) / Self.maxConnectionsPerProcess
                throw .usage(
                    "--connections \(self.connections) needs --workers \(needed) or more (at most "
                        + "\(Self.maxConnectionsPerProcess) sockets per process)")
            }
            guard self.connections <= self.sourceAddresses * 28_000 else {
                throw .usage("--connections \(self.connections) needs more --source-addresses (~28,000 ports each)")
            }
        }
    }

    private func checkSockets(_ count: Int) throws(LoadtestError) {
        guard count <= Self.maxConnectionsPerProcess else {
            throw .usage("\(count) connections exceed \(Self.maxConnectionsPerProcess) per process")
        }
    }
}
