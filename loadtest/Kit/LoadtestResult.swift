import Foundation

/// The JSON result of CONTRACT.md (one object), plus `client`.
public struct LoadtestResult: Codable, Sendable {
    public struct Connections: Codable, Sendable, Equatable {
        public var opened = 0
        public var failed = 0
        public var dropped = 0
    }

    public struct Server: Codable, Sendable {
        public var cpuPercent = 0.0
        public var rssBytesBefore: UInt64 = 0
        public var rssBytesAfter: UInt64 = 0
        public var rssBytesPeak: UInt64 = 0
        /// Only from the `connections` scenario.
        public var rssBytesPerConnection: Double?
        /// With `--stalled-percent`: RSS samples `[t, bytes]`, about one a second, t in seconds since publishing
        /// began (the warm-up's start; negative before), and the server's open file descriptors `[t, n]` at the
        /// same times (its connections, so a broker closing stalled subscribers shows as a drop).
        public var rssSeries: [SeriesPoint]?
        public var openFilesSeries: [SeriesPoint]?
    }

    /// `[t, value]` in JSON.
    public struct SeriesPoint: Codable, Sendable, Equatable {
        public var t: Double
        public var value: UInt64

        public init(t: Double, value: UInt64) {
            self.t = t
            self.value = value
        }

        public func encode(to encoder: Encoder) throws {
            var container = encoder.unkeyedContainer()
            try container.encode(self.t)
            try container.encode(self.value)
        }

        public init(from decoder: Decoder) throws {
            var container = try decoder.unkeyedContainer()
            self.t = try container.decode(Double.self)
            self.value = try container.decode(UInt64.self)
        }
    }

    /// fanout with `--stalled-percent`: the subscribers that stopped reading. `deliveredPerSecond`, `delivered`,
    /// `expected`, `lost` and `latencyMs` of the result count the healthy subscribers only.
    public struct Stalled: Codable, Sendable {
        public var percent = 0.0
        /// Stalled subscribers per topic, and in all.
        public var perTopic = 0
        public var subscribers = 0
        public var healthySubscribers = 0
        /// = the result's `deliveredPerSecond`: MESSAGEs/s to the healthy subscribers in the measured window.
        public var healthyDeliveredPerSecond = 0.0
        /// Stalled connections the broker closed (ERROR, WebSocket close or TCP end). A close is queued behind
        /// what the subscriber did not read, so it is seen when the stalled subscribers read again after the run.
        public var closedByBroker = 0
        /// Stalled connections still open when the backlog reading ended (idle 1 s, or the time limit).
        public var openAtEnd = 0
        /// What the stalled subscribers read after the run: what the broker had queued or buffered for them.
        public var deliveredAfterResume: UInt64 = 0
        public var bytesAfterResume: UInt64 = 0
        public var drainSeconds = 0.0
        /// The broker's distinct reasons for closing (ERROR message, close frame), at most 10.
        public var closeReasons: [String] = []
    }

    public struct Client: Codable, Sendable {
        /// The load generator's own CPU (all its processes with `--workers`), percent of one core.
        public var cpuPercent = 0.0
    }

    /// A parameter value: a number or a word.
    public enum Parameter: Codable, Sendable, Equatable {
        case int(Int)
        case double(Double)
        case string(String)

        public func encode(to encoder: Encoder) throws {
            var container = encoder.singleValueContainer()
            switch self {
            case .int(let value): try container.encode(value)
            case .double(let value): try container.encode(value)
            case .string(let value): try container.encode(value)
            }
        }

        public init(from decoder: Decoder) throws {
            let container = try decoder.singleValueContainer()
            if let value = try? container.decode(Int.self) {
                self = .int(value)
            } else if let value = try? container.decode(Double.self) {
                self = .double(value)
            } else {
                self = .string(try container.decode(String.self))
            }
        }
    }

    public var scenario: String
    public var target: String
    public var deflate: Bool
    public var parameters: [String: Parameter]
    public var durationSeconds: Double
    public var sent: UInt64 = 0
    public var delivered: UInt64 = 0
    public var expected: UInt64 = 0
    public var lost: UInt64 = 0
    public var duplicated: UInt64 = 0
    public var outOfOrder: UInt64 = 0
    public var sentPerSecond = 0.0
    public var deliveredPerSecond = 0.0
    public var latencyMs = LatencySummary()
    public var connections = Connections()
    public var server: Server?
    public var stalled: Stalled?
    public var client = Client()
    public var errors: [String] = []

    public init(configuration: LoadtestConfiguration) {
        self.scenario = configuration.scenario.rawValue
        self.target = configuration.url.description
        self.deflate = configuration.deflate
        self.durationSeconds = configuration.scenario == .connections ? configuration.holdSeconds : configuration.durationSeconds
        var parameters: [String: Parameter] = [:]
        switch configuration.scenario {
        case .fanout:
            parameters = ["publishers": .int(configuration.publishers), "topics": .int(configuration.topics),
                          "subscribers": .int(configuration.subscribers), "rate": .double(configuration.rate)]
        case .rooms:
            parameters = ["rooms": .int(configuration.rooms), "members": .int(configuration.members),
                          "rate": .double(configuration.rate)]
        case .queue:
            parameters = ["producers": .int(configuration.publishers), "consumers": .int(configuration.consumers),
                          "queues": .int(configuration.queues), "ack": .string(configuration.ackMode.rawValue),
                          "rate": .double(configuration.rate)]
            if configuration.persistent { parameters["persistent"] = .string("true") }
        case .connections:
            parameters = ["connections": .int(configuration.connections),
                          "heartbeatMs": .int(configuration.heartbeatMilliseconds),
                          "hold": .double(configuration.holdSeconds), "workers": .int(configuration.workers)]
        }
        if configuration.scenario != .connections {
            parameters["payload"] = .int(configuration.payloadBytes)
            parameters["warmup"] = .double(configuration.warmupSeconds)
        }
        parameters["sourceAddresses"] = .int(configuration.sourceAddresses)
        if configuration.scenario == .fanout, let percent = configuration.stalledPercent {
            parameters["stalledPercent"] = .double(percent)
        }
        self.parameters = parameters
    }

    /// CONTRACT.md: 3 when the target refused or dropped connections, else 1 when verification failed, else 0.
    public var exitStatus: Int32 {
        if self.connections.failed > 0 || self.connections.dropped > 0 { return ExitStatus.refused }
        if self.scenario != Scenario.connections.rawValue && self.connections.opened == 0 { return ExitStatus.refused }
        if self.lost > 0 || self.duplicated > 0 || self.outOfOrder > 0 { return ExitStatus.verificationFailed }
        return ExitStatus.ok
    }

    /// The human summary printed on stdout.
    public var summary: String {
        func rate(_ value: Double) -> String { String(format: "%.0f", value) }
        func ms(_ value: Double) -> String { String(format: "%.3f", value) }
        var lines: [String] = []
        lines.append("starling-loadtest \(self.scenario) -> \(self.target)  deflate=\(self.deflate ? "on" : "off")  "
            + self.parameters.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value.text)" }.joined(separator: " "))
        if self.scenario != Scenario.connections.rawValue {
            lines.append("  messages   sent \(self.sent)  delivered \(self.delivered)  expected \(self.expected)  "
                + "lost \(self.lost)  duplicated \(self.duplicated)  out-of-order \(self.outOfOrder)")
            lines.append("  rate       sent \(rate(self.sentPerSecond))/s  delivered \(rate(self.deliveredPerSecond))/s "
                + "over \(self.durationSeconds) s")
            lines.append("  latency ms p50 \(ms(self.latencyMs.p50))  p90 \(ms(self.latencyMs.p90))  "
                + "p99 \(ms(self.latencyMs.p99))  p99.9 \(ms(self.latencyMs.p999))  max \(ms(self.latencyMs.max))")
        }
        lines.append("  connections opened \(self.connections.opened)  failed \(self.connections.failed)  "
            + "dropped \(self.connections.dropped)")
        if let server = self.server {
            var line = "  server     cpu \(String(format: "%.1f", server.cpuPercent))%  rss before "
                + "\(server.rssBytesBefore / 1024) KiB  after \(server.rssBytesAfter / 1024) KiB  peak \(server.rssBytesPeak / 1024) KiB"
            if let perConnection = server.rssBytesPerConnection {
                line += "  per connection \(String(format: "%.0f", perConnection)) B"
            }
            lines.append(line)
        }
        if let stalled = self.stalled {
            lines.append("  stalled    \(stalled.subscribers) subscribers (\(stalled.perTopic) per topic), healthy "
                + "\(stalled.healthySubscribers) at \(rate(stalled.healthyDeliveredPerSecond))/s; closed by the broker "
                + "\(stalled.closedByBroker), open \(stalled.openAtEnd); read after resuming \(stalled.deliveredAfterResume) "
                + "messages, \(stalled.bytesAfterResume / 1024) KiB in \(String(format: "%.1f", stalled.drainSeconds)) s")
            for reason in stalled.closeReasons { lines.append("  stalled closed: \(reason)") }
        }
        if let series = self.server?.rssSeries, !series.isEmpty {
            lines.append("  server rss MiB over time: " + series.map { String(format: "%.0fs %.0f", $0.t, Double($0.value) / 1_048_576) }
                .joined(separator: ", "))
        }
        lines.append("  client     cpu \(String(format: "%.1f", self.client.cpuPercent))%")
        for error in self.errors {
            lines.append("  error: \(error)")
        }
        let verdict: String
        switch self.exitStatus {
        case ExitStatus.ok: verdict = "OK"
        case ExitStatus.verificationFailed: verdict = "VERIFICATION FAILED"
        default: verdict = "TARGET REFUSED OR DROPPED CONNECTIONS"
        }
        lines.append("  result: \(verdict) (exit \(self.exitStatus))")
        return lines.joined(separator: "\n")
    }
}

extension LoadtestResult.Parameter {
    var text: String {
        switch self {
        case .int(let value): String(value)
        case .double(let value): value == value.rounded() ? String(Int(value)) : String(value)
        case .string(let value): value
        }
    }
}
