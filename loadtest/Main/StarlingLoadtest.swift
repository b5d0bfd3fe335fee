import ArgumentParser
import Foundation
import StarlingLoadtestKit

/// `starling-loadtest <scenario> [options]`, see loadtest/CONTRACT.md. Thin: parses the command line into a
/// `LoadtestConfiguration`, runs it, prints the summary, writes the JSON, exits with the contract's status.
@main
struct StarlingLoadtest: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "starling-loadtest",
        abstract: "Load generator and verifier for STOMP-over-WebSocket brokers (Starling, RabbitMQ Web-STOMP, ...).",
        discussion: """
            Exit status: 0 ok; 1 verification failed (lost, duplicated or out-of-order messages); 2 bad usage;
            3 the target refused or dropped connections (or did not answer CONNECT).
            """
    )

    @Argument(help: "fanout | rooms | queue | connections")
    var scenario: String

    @Option(help: "Target WebSocket URL, path included.") var url = "ws://127.0.0.1:8080/ws"
    @Option(help: "CONNECT login.") var login: String?
    @Option(help: "CONNECT passcode.") var passcode: String?
    @Option(help: "CONNECT host header (virtual host); default: the URL's host.") var host: String?
    @Option(help: "Offer permessage-deflate: on | off.") var deflate = "off"
    @Option(help: "Measured seconds.") var duration = 10.0
    @Option(help: "Seconds excluded from the figures before the measured window.") var warmup = 2.0
    @Option(help: "Message body size in bytes.") var payload = 100
    @Option(name: .customLong("json"), help: "Write the result as JSON to this file.") var jsonFile: String?
    @Option(name: .customLong("server-pid"), help: "Sample this process's CPU and RSS from /proc.") var serverPID: Int32?
    @Option(name: .customLong("source-addresses"), help: "Spread client sockets over 127.0.0.1 ... 127.0.0.N.")
    var sourceAddresses = 1
    @Flag(help: "No live progress line.") var quiet = false

    @Option(help: "fanout: publishers.") var publishers = 1
    @Option(help: "fanout: topics.") var topics = 1
    @Option(help: "fanout: subscribers per topic.") var subscribers = 100
    @Option(name: .customLong("stalled-percent"), help: ArgumentHelp(
        "fanout: this % of each topic's subscribers stop reading once subscribed (default 0). Given (even 0), the result adds `stalled` and the server's RSS series."))
    var stalledPercent: Double?
    @Option(help: "rooms: rooms.") var rooms = 10
    @Option(help: "rooms: members per room.") var members = 10
    @Option(help: "queue: producers.") var producers = 1
    @Option(help: "queue: consumers.") var consumers = 1
    @Option(help: "queue: queues.") var queues = 1
    @Option(help: "queue: auto | client-individual.") var ack = "auto"
    @Flag(help: "queue: SENDs carry persistent:true and a receipt (the broker stores each message before its RECEIPT).")
    var persistent = false

    @Flag(help: "rooms: use Starling's /room/<name> destinations (membership, offsets, history) instead of /topic/.")
    var roomDestinations = false
    @Option(help: "Messages/s: total (fanout, queue) or per member (rooms); 0 = as fast as possible.") var rate: Double?

    @Option(help: "connections: connections to open.") var connections = 1000
    @Option(help: "connections: heart-beat in ms, both ways (0 = none).") var heartbeat = 10_000
    @Option(help: "connections: seconds to hold the connections (replaces --duration).") var hold = 10.0
    @Option(help: "connections: child processes sharing the connections.") var workers = 1
    @Option(name: .customLong("worker-index"), help: .hidden) var workerIndex: Int?
    @Option(name: .customLong("in-flight"), help: ArgumentHelp(
        "--rate 0: messages in flight (sent, not yet received) per subscription. Throughput at rate 0 is at most this window divided by the latency (Little's law)."))
    var inFlight = 32

    /// Default `--rate` per scenario: rooms chat at 1 msg/s per member; the others go as fast as possible.
    private func defaultRate(_ scenario: Scenario) -> Double { scenario == .rooms ? 1 : 0 }

    func makeConfiguration() throws(LoadtestError) -> LoadtestConfiguration {
        guard let scenario = Scenario(rawValue: self.scenario) else {
            throw .usage("unknown scenario '\(self.scenario)' (fanout, rooms, queue, connections)")
        }
        let target: TargetURL
        switch TargetURL.parse(self.url) {
        case .success(let value): target = value
        case .failure(let error): throw error
        }
        var configuration = LoadtestConfiguration(scenario: scenario, url: target)
        configuration.login = self.login
        configuration.passcode = self.passcode
        configuration.virtualHost = self.host
        switch self.deflate {
        case "on": configuration.deflate = true
        case "off": configuration.deflate = false
        default: throw .usage("--deflate must be on or off")
        }
        guard let ackMode = AckMode(rawValue: self.ack) else { throw .usage("--ack must be auto or client-individual") }
        configuration.ackMode = ackMode
        configuration.persistent = self.persistent
        configuration.roomDestinations = self.roomDestinations
        configuration.durationSeconds = self.duration
        configuration.warmupSeconds = self.warmup
        configuration.payloadBytes = self.payload
        configuration.serverPID = self.serverPID
        configuration.sourceAddresses = self.sourceAddresses
        configuration.quiet = self.quiet
        configuration.publishers = scenario == .queue ? self.producers : self.publishers
        configuration.topics = self.topics
        configuration.subscribers = self.subscribers
        configuration.rooms = self.rooms
        configuration.members = self.members
        configuration.consumers = self.consumers
        configuration.queues = self.queues
        configuration.rate = self.rate ?? self.defaultRate(scenario)
        configuration.connections = self.connections
        configuration.inFlightPerSubscription = self.inFlight
        configuration.stalledPercent = self.stalledPercent
        configuration.heartbeatMilliseconds = self.heartbeat
        configuration.holdSeconds = self.hold
        configuration.workers = self.workers
        if let workerIndex = self.workerIndex {
            configuration.isWorker = true
            configuration.workerIndex = workerIndex
            configuration.workers = 1
        }
        try configuration.validate()
        return configuration
    }

    func run() async throws {
        let configuration: LoadtestConfiguration
        do {
            configuration = try self.makeConfiguration()
        } catch {
            Self.fail(error.description, status: error.exitStatus)
        }
        let result = await LoadtestRunner(configuration: configuration).run()
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let json = (try? encoder.encode(result)) ?? Data("{}".utf8)
        if configuration.isWorker {
            FileHandle.standardOutput.write(json + Data("\n".utf8))
            return
        }
        print(result.summary)
        if let path = self.jsonFile {
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            do {
                try ((try? encoder.encode(result)) ?? json).write(to: URL(fileURLWithPath: path))
            } catch {
                Self.fail("cannot write --json \(path): \(error)", status: ExitStatus.usage)
            }
        }
        Foundation.exit(result.exitStatus)
    }

    static func fail(_ message: String, status: Int32) -> Never {
        FileHandle.standardError.write(Data("starling-loadtest: \(message)\n".utf8))
        Foundation.exit(status)
    }

    /// ArgumentParser exits 64 on bad usage; CONTRACT.md says 2.
    static func main() async {
        do {
            var command = try Self.parseAsRoot()
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            let code = Self.exitCode(for: error)
            if code == .success {
                Self.exit(withError: error)
            }
            FileHandle.standardError.write(Data((Self.fullMessage(for: error) + "\n").utf8))
            Foundation.exit(ExitStatus.usage)
        }
    }
}
