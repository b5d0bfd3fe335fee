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
