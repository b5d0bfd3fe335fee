import Foundation
import Logging
import StarlingBroker
import StarlingStore

/// The named settings of the command-line contract (DESIGN.md): each is a flag `--name`, an environment variable
/// `STARLING_NAME` (upper case, `-` -> `_`) and a top-level key `name = value` of the `--config` file.
/// Precedence: flag, then environment, then file, then the built-in default.
extension ServerConfiguration {
    public struct SettingError: Error, CustomStringConvertible, Equatable {
        public var description: String
        public init(_ description: String) { self.description = description }
    }

    /// Every setting name with a one-line help, in the order `--help` shows them.
    public static let settings: [(name: String, help: String)] = [
        ("host", "address to listen on (default 127.0.0.1)"),
        ("port", "HTTP + WebSocket port (default 8080; 0 = any free port)"),
        ("stomp-port", "plain TCP STOMP port (default 61613; 0 = any free port; off = disabled)"),
        ("data-dir", "data directory: the message store starling.db lives here (default ./starling-data)"),
        ("storage", "sqlite (persistent messages survive restarts and crashes) | memory (default sqlite)"),
        ("fsync", "always (a persistent SEND's RECEIPT means it is on disk) | interval (fsync every fsync-interval-ms; a power failure loses at most that) | off (default always)"),
        ("fsync-interval-ms", "with fsync = interval: how often the store is fsynced (default 1000)"),
        ("log-level", "trace|debug|info|notice|warning|error|critical (default info)"),
        ("log-format", "logfmt | json: one line per event on stderr (default logfmt)"),
        ("echo-path", "WebSocket echo endpoint for conformance testing, e.g. /echo (default off)"),
        ("web-root", "directory served at / (default: ./web-client or the one next to the binary)"),
        ("event-loops", "event loop threads (default: one per core)"),
        ("max-body-size", "largest STOMP frame body in bytes (default 1048576)"),
        ("max-message-size", "largest WebSocket message in bytes, after inflation (default max-body-size + 131072)"),
        ("max-header-count", "most headers in one frame (default 64)"),
        ("max-header-length", "longest header line in bytes (default 8192)"),
        ("max-subscriptions", "subscriptions per connection (default 1024)"),
        ("max-frame-rate", "frames per second one connection may send (a token bucket of one second's worth; past it reading pauses) (default 50000, 0 = unlimited)"),
        ("max-connections", "open client connections (TCP and WebSocket) the server accepts at most (default 100000)"),
        ("max-connections-per-ip", "open client connections from one IP address at most (default 50000; behind a reverse proxy every client has its address)"),
        ("allowed-origins", "comma-separated Origins browsers may open WebSockets from, e.g. https://chat.example.com (default any)"),
        ("max-pending-bytes", "outbound bytes queued for a client before it is disconnected as slow (default 4194304)"),
        ("heartbeat-send-ms", "fastest server heart-beat in ms (default 10000; 0 = never)"),
        ("heartbeat-receive-ms", "fastest client heart-beat the server asks for, in ms (default 10000; 0 = none)"),
        ("connect-timeout-ms", "close connections that send no CONNECT within this time (default 10000)"),
        ("deflate", "permessage-deflate on|off (default on)"),
        ("deflate-window-bits", "server compressor window, 9...15 (default 15)"),
        ("deflate-memory-level", "zlib memLevel 1...9 (default 8)"),
        ("deflate-context-takeover", "on = one compressor per connection keeping its window; off = server_no_context_takeover, one shared compressor per event loop (default off)"),
        ("deflate-client-context-takeover", "on = clients may keep their window (an inflater per connection); off = answer client_no_context_takeover (default off)"),
        ("shutdown-timeout-ms", "how long shutdown waits for clients to close (default 5000)"),
        ("drain-window-ms", "shutdown spreads the disconnects over this long, so reconnects reach the next node gradually (default 0: all at once)"),
        ("queue-prefetch", "unacknowledged messages per queue consumer when SUBSCRIBE has no prefetch-count (default 100; 0 = unlimited)"),
        ("queue-max-deliveries", "deliveries of a queue message before it goes to the dead-letter queue (default 5)"),
        ("queue-max-length", "ready messages a queue holds at most (default 100000)"),
        ("queue-max-bytes", "body bytes of ready messages a queue holds at most (default 268435456)"),
        ("queue-overflow", "full queue: reject-publish (ERROR to the producer) | drop-head (oldest to the dead-letter queue) (default reject-publish)"),
        ("room-history", "messages a room keeps for x-history and x-resume-from (default 100, 0 = none)"),
        ("room-history-max-bytes", "encoded bytes a room keeps at most (default 1048576; the newest message is kept whatever its size)"),
        ("presence-max-meta-bytes", "bytes of presence metadata (x-presence-* keys and values) per connection and member (default 1024)"),
        ("room-history-ttl-ms", "how long a room keeps a message, in ms (default 86400000 = 1 day, 0 = until pushed out)"),
        ("queue-ttl-ms", "time to live of queue messages without expires/ttl/expiration headers, in ms (default 0 = forever)"),
        ("queue-expired", "expired queue messages: dead-letter | drop (default dead-letter)"),
        ("dead-letter-suffix", "the dead-letter queue of /queue/x is /queue/x + this (default .dlq)"),
        ("idempotency-window-ms", "a SEND repeating an idempotency-key seen within this many ms is not delivered again (default 300000)"),
        ("idempotency-max-keys", "idempotency keys remembered at most, oldest forgotten first (default 100000)"),
    ]

    /// Applies one setting given as text. Throws naming the setting when the value is wrong.
    public mutating func apply(_ name: String, _ value: String, logLevel: inout Logger.Level) throws(SettingError) {
        func integer(_ range: ClosedRange<Int>) throws(SettingError) -> Int {
            guard let number = Int(value), range.contains(number) else {
                throw SettingError("\(name): expected an integer in \(range.lowerBound)...\(range.upperBound), got '\(value)'")
            }
            return number
        }
        switch name {
        case "host": self.host = value
        case "port": self.port = try integer(0...65535)
        case "stomp-port": self.stompPort = (value == "off" || value == "false") ? nil : try integer(0...65535)
        case "data-dir": self.dataDirectory = value
        case "storage":
            guard let storage = Storage(rawValue: value) else { throw SettingError("storage: expected sqlite or memory, got '\(value)'") }
            self.storage = storage
        case "fsync":
            guard let policy = StoreSyncPolicy(rawValue: value) else {
                throw SettingError("fsync: expected always, interval or off, got '\(value)'")
            }
            self.fsync = policy
        case "fsync-interval-ms": self.fsyncIntervalMilliseconds = try integer(1...3_600_000)
        case "log-level":
            guard let level = Logger.Level(rawValue: value.lowercased()) else {
                throw SettingError("log-level: expected trace, debug, info, notice, warning, error or critical, got '\(value)'")
            }
            logLevel = level
        case "log-format":
            guard let format = LogfmtHandler.Format(rawValue: value) else {
                throw SettingError("log-format: expected logfmt or json, got '\(value)'")
            }
            self.logFormat = format
        case "echo-path":
            guard value.hasPrefix("/") || value == "off" else { throw SettingError("echo-path: expected a path starting with '/', got '\(value)'") }
            self.echoPath = value == "off" ? nil : value
        case "web-root": self.webRoot = value
        case "event-loops": self.eventLoopCount = try integer(1...64)
        case "max-body-size": self.limits.maxBodySize = try integer(0...(256 << 20))
        case "max-message-size": self.webSocket.maxMessageSize = try integer(1024...(512 << 20))
        case "max-header-count": self.limits.maxHeaderCount = try integer(1...10_000)
        case "max-header-length": self.limits.maxHeaderLineLength = try integer(16...(1 << 20))
        case "max-subscriptions": self.limits.maxSubscriptionsPerConnection = try integer(1...1_000_000)
        case "presence-max-meta-bytes": self.limits.maxPresenceMetaBytes = try integer(0...(1 << 20))
        case "room-history-max-bytes": self.rooms.historyMaxBytes = try integer(0...(1 << 34))
        case "max-pending-bytes": self.limits.maxPendingBytes = try integer(1024...(1 << 30))
        case "max-connections": self.limits.maxConnections = try integer(1...10_000_000)
        case "max-frame-rate": self.limits.maxFrameRate = try integer(0...100_000_000)
        case "max-connections-per-ip": self.limits.maxConnectionsPerAddress = try integer(1...10_000_000)
        case "allowed-origins":
            let origins = value.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            guard origins.allSatisfy({ $0.hasPrefix("http://") || $0.hasPrefix("https://") }) else {
                throw SettingError("allowed-origins: expected comma-separated origins such as https://chat.example.com, got '\(value)'")
            }
            self.webSocket.allowedOrigins = origins
        case "heartbeat-send-ms": self.heartbeat.sendMilliseconds = try integer(0...3_600_000)
        case "heartbeat-receive-ms": self.heartbeat.receiveMilliseconds = try integer(0...3_600_000)
        case "connect-timeout-ms": self.heartbeat.connectTimeoutMilliseconds = try integer(100...3_600_000)
        case "deflate": self.webSocket.deflate = try Self.onOff(name, value)
        case "deflate-context-takeover": self.webSocket.deflateContextTakeover = try Self.onOff(name, value)
        case "deflate-client-context-takeover": self.webSocket.deflateClientContextTakeover = try Self.onOff(name, value)
        case "deflate-window-bits": self.webSocket.deflateWindowBits = try integer(9...15)
        case "deflate-memory-level": self.webSocket.deflateMemoryLevel = try integer(1...9)
        case "shutdown-timeout-ms": self.shutdownTimeout = .milliseconds(Int64(try integer(0...600_000)))
        case "drain-window-ms": self.drainWindow = .milliseconds(Int64(try integer(0...3_600_000)))
        case "queue-prefetch": self.queues.defaultPrefetch = try integer(0...1_000_000)
        case "queue-max-deliveries": self.queues.maxDeliveries = try integer(1...1_000_000)
        case "queue-max-length": self.queues.maxLength = try integer(1...100_000_000)
        case "queue-max-bytes": self.queues.maxBytes = try integer(1024...(64 << 30))
        case "queue-overflow":
            guard let overflow = QueuePolicy.Overflow(rawValue: value) else {
                throw SettingError("queue-overflow: expected reject-publish or drop-head, got '\(value)'")
            }
            self.queues.overflow = overflow
        case "room-history": self.rooms.history = try integer(0...1_000_000)
        case "room-history-ttl-ms":
            let ttl = try integer(0...(365 * 86_400_000))
            self.rooms.historyTTL = ttl == 0 ? nil : Int64(ttl)
        case "queue-ttl-ms":
            let ttl = try integer(0...(365 * 86_400_000))
            self.queues.defaultTTL = ttl == 0 ? nil : Int64(ttl)
        case "queue-expired":
            guard let action = QueuePolicy.ExpiredAction(rawValue: value) else {
                throw SettingError("queue-expired: expected dead-letter or drop, got '\(value)'")
            }
            self.queues.expiredAction = action
        case "idempotency-window-ms": self.idempotencyWindowMilliseconds = try integer(1...(7 * 86_400_000))
        case "idempotency-max-keys": self.idempotencyMaxKeys = try integer(1...10_000_000)
        case "dead-letter-suffix":
            guard !value.isEmpty, !value.contains("/"), QueueName.problem("/queue/x" + value) == nil else {
                throw SettingError("dead-letter-suffix: expected a non-empty suffix without '/', '*', '#' or control characters, got '\(value)'")
            }
            self.queues.deadLetterSuffix = value
        default: throw SettingError("unknown setting '\(name)'")
        }
    }

    private static func onOff(_ name: String, _ value: String) throws(SettingError) -> Bool {
        switch value.lowercased() {
        case "on", "true", "yes": return true
        case "off", "false", "no": return false
        default: throw SettingError("\(name): expected on or off, got '\(value)'")
        }
    }

    /// Resolves settings from flags (already parsed, name -> value), the environment and the config file.
    public static func resolve(
        flags: [String: String],
        environment: [String: String] = ProcessInfo.processInfo.environment,
        configFile: String?
    ) throws(SettingError) -> (ServerConfiguration, Logger.Level) {
        var configuration = ServerConfiguration()
        var logLevel = Logger.Level.info
        let known = Set(self.settings.map(\.name))
        if let unknown = flags.keys.sorted().first(where: { !known.contains($0) }) {
            throw SettingError("unknown setting '\(unknown)'")
        }
        var document = ConfigFile.Document()
        if let configFile {
            let text: String
            do {
                text = try String(contentsOfFile: configFile, encoding: .utf8)
            } catch {
                throw SettingError("config: cannot read '\(configFile)': \(error.localizedDescription)")
            }
            document = try ConfigFile.parse(text, file: configFile)
        }
        var values = document.values
        for (name, _) in self.settings {
            let variable = "STARLING_" + name.uppercased().replacingOccurrences(of: "-", with: "_")
            if let value = environment[variable] { values[name] = value }
            if let value = flags[name] { values[name] = value }
        }
        for (name, _) in self.settings {
            if let value = values[name] { try configuration.apply(name, value, logLevel: &logLevel) }
        }
        for table in document.policies { try configuration.addPolicy(table) }
        if let table = document.sections["auth"] { try configuration.setAuth(table) }
        if let table = document.sections["tls"] { try configuration.setTLS(table) }
        if let table = document.sections["admin"] { try configuration.setAdmin(table) }
        for table in document.acls { configuration.accessRules.append(try AccessRule(table)) }
        return (configuration, logLevel)
    }

    /// Keys of a `[[policy]]` table for `/queue/` patterns, and the top-level setting each one overrides.
    static let queuePolicyKeys: [String: String] = [
        "prefetch": "queue-prefetch", "max-deliveries": "queue-max-deliveries", "max-length": "queue-max-length",
        "max-bytes": "queue-max-bytes", "overflow": "queue-overflow", "ttl-ms": "queue-ttl-ms",
        "expired": "queue-expired", "dead-letter-suffix": "dead-letter-suffix",
    ]
    /// Keys of a `[[policy]]` table for `/room/` and `/topic/` patterns, and the top-level setting each one overrides
    /// (for rooms; a topic table starts from no history).
    static let historyPolicyKeys: [String: String] = [
        "history": "room-history", "history-ttl-ms": "room-history-ttl-ms", "history-max-bytes": "room-history-max-bytes",
    ]
    /// Policy keys of DESIGN.md for features still being built: named in the error instead of "unknown".
    static let laterPolicyKeys: Set<String> = ["persistent"]
    /// Keys of a `[[policy]]` table for `/topic/` patterns (and `slow-consumer = "disconnect"` for `/room/`) that say
    /// how messages reach slow or rate-capped subscribers.
    static let deliveryPolicyKeys: Set<String> = ["slow-consumer", "max-rate", "max-pending-messages"]

    /// Adds one `[[policy]]` table: `match` (a destination pattern) and the settings it overrides. First match wins,
    /// in file order; a queue not matched by any table follows the top-level `queue-*` settings.
    mutating func addPolicy(_ table: ConfigFile.Table) throws(SettingError) {
        guard let match = table.entries.first(where: { $0.key == "match" }) else {
            throw SettingError("\(table.location): [[policy]] needs a 'match' destination pattern")
        }
        guard let pattern = DestinationPattern(match.value) else {
            throw SettingError("\(match.location): match: expected a destination pattern such as \"/queue/orders.#\", got '\(match.value)'")
        }
        var scratch = ServerConfiguration()
        scratch.queues = self.queues
        scratch.rooms = self.rooms
        let isTopic = match.value.hasPrefix(TopicName.prefix)
        if isTopic {
            // A topic keeps nothing unless its table says so, and what it keeps does not expire unless it says so.
            scratch.rooms.history = 0
            scratch.rooms.historyTTL = nil
        }
        var ignored = Logger.Level.info
        var delivery = DeliveryPolicy()
        for entry in table.entries where entry.key != "match" {
            if Self.deliveryPolicyKeys.contains(entry.key) {
                try Self.applyDeliveryKey(entry, to: &delivery, pattern: match.value)
                continue
            }
            if entry.key == "last-value" {
                guard isTopic else { throw SettingError("\(entry.location): 'last-value' applies to /topic/ patterns, not '\(match.value)'") }
                guard entry.value == "true" || entry.value == "false" else {
                    throw SettingError("\(entry.location): last-value: expected true or false, got '\(entry.value)'")
                }
                scratch.rooms.lastValue = entry.value == "true"
                continue
            }
            let queueSetting = Self.queuePolicyKeys[entry.key]
            if let setting = queueSetting ?? Self.historyPolicyKeys[entry.key] {
                let applies = queueSetting != nil ? match.value.hasPrefix(QueueName.prefix) : isTopic || match.value.hasPrefix(RoomName.roomPrefix)
                guard applies else {
                    let kinds = queueSetting != nil ? "/queue/ patterns" : "/room/ and /topic/ patterns"
                    throw SettingError("\(entry.location): '\(entry.key)' applies to \(kinds), not '\(match.value)'")
                }
                do {
                    try scratch.apply(setting, entry.value, logLevel: &ignored)
                } catch {
                    throw SettingError("\(entry.location): \(error.description.replacingOccurrences(of: setting, with: entry.key))")
                }
            } else if Self.laterPolicyKeys.contains(entry.key) {
                throw SettingError("\(entry.location): policy key '\(entry.key)' is not supported by this version")
            } else {
                throw SettingError("\(entry.location): unknown policy key '\(entry.key)'")
            }
        }
        if isTopic || match.value.hasPrefix(RoomName.roomPrefix) {
            self.historyPolicyRules.append((pattern, scratch.rooms))
            self.deliveryPolicyRules.append((pattern, delivery))
        } else {
            self.queuePolicyRules.append((pattern, scratch.queues))
        }
    }
}

/// The subset of TOML this version reads: top-level `key = value` lines (strings, integers, booleans),
/// `[[policy]]` and `[[acl]]` tables of the same lines, `[auth]` and `[tls]` tables, and comments. Other tables
/// (`[cluster]`, ...) arrive with the issues that give them meaning; until then they are an error.
enum ConfigFile {
    struct Table {
        var location: String
        var entries: [(key: String, value: String, location: String)] = []
    }

    /// What a file holds: top-level values, `[[policy]]` and `[[acl]]` tables in file order, and the single tables.
    struct Document {
        var values: [String: String] = [:]
        var policies: [Table] = []
        var acls: [Table] = []
        /// `[auth]`, `[tls]`, by name without brackets.
        var sections: [String: Table] = [:]
    }

    /// The tables that appear at most once.
    static let sectionNames: Set<String> = ["auth", "tls", "admin"]

    static func parse(_ text: String, file: String) throws(ServerConfiguration.SettingError) -> Document {
        var document = Document()
        /// The table the lines below belong to: nil = top level.
        enum Target { case policy, acl, section(String) }
        var target: Target?
        let known = Set(ServerConfiguration.settings.map(\.name))
        for (number, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = Self.stripComment(rawLine).trimmingCharacters(in: .whitespaces)
            if line.isEmpty { continue }
            let location = "\(file):\(number + 1)"
            if line == "[[policy]]" {
                document.policies.append(Table(location: location))
                target = .policy
                continue
            }
            if line == "[[acl]]" {
                document.acls.append(Table(location: location))
                target = .acl
                continue
            }
            if line.hasPrefix("["), line.hasSuffix("]"), Self.sectionNames.contains(String(line.dropFirst().dropLast())) {
                let name = String(line.dropFirst().dropLast())
                guard document.sections[name] == nil else { throw .init("\(location): \(line) appears twice") }
                document.sections[name] = Table(location: location)
                target = .section(name)
                continue
            }
            if line.hasPrefix("[") {
                throw .init("\(location): section \(line) is not supported by this version")
            }
            guard let equals = line.firstIndex(of: "=") else {
                throw .init("\(location): expected 'key = value', got '\(line)'")
            }
            let key = line[..<equals].trimmingCharacters(in: .whitespaces).trimmingCharacters(in: CharacterSet(charactersIn: "\""))
            var value = line[line.index(after: equals)...].trimmingCharacters(in: .whitespaces)
            if value.hasPrefix("\"") {
                guard value.count >= 2, value.hasSuffix("\"") else { throw .init("\(location): unterminated string for '\(key)'") }
                value = String(value.dropFirst().dropLast())
            }
            guard !value.isEmpty else { throw .init("\(location): '\(key)' has no value") }
            let entry = (key: key, value: value, location: location)
            switch target {
            case .acl:
                try Self.append(entry, to: &document.acls[document.acls.count - 1], named: "this [[acl]]")
            case .policy:
                try Self.append(entry, to: &document.policies[document.policies.count - 1], named: "this [[policy]]")
            case .section(let name):
                try Self.append(entry, to: &document.sections[name]!, named: "[\(name)]")
            case nil:
                guard known.contains(key) else { throw .init("\(location): unknown key '\(key)'") }
                document.values[key] = value
            }
        }
        return document
    }

    private static func append(
        _ entry: (key: String, value: String, location: String), to table: inout Table, named name: String
    ) throws(ServerConfiguration.SettingError) {
        guard !table.entries.contains(where: { $0.key == entry.key }) else {
            throw .init("\(entry.location): '\(entry.key)' appears twice in \(name)")
        }
        table.entries.append(entry)
    }

    private static func stripComment(_ line: Substring) -> String {
        var inString = false
        for index in line.indices {
            let character = line[index]
            if character == "\"" { inString.toggle() }
            if character == "#" && !inString { return String(line[..<index]) }
        }
        return String(line)
    }
}
