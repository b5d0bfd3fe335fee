import ArgumentParser
import Foundation
import Logging
import ServiceLifecycle
import StarlingServer
import UnixSignals

@main
struct Starling: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "starling",
        abstract: "A STOMP messaging server over WebSocket and TCP.",
        discussion: """
            Every option is also an environment variable STARLING_<NAME> (e.g. STARLING_STOMP_PORT) and a top-level \
            key of the --config file; flags win over the environment, which wins over the file.
            """,
        subcommands: [Passwd.self, CheckConfig.self]
    )

    @Option(help: "TOML configuration file.") var config: String?
    @Option(help: "Address to listen on (default 127.0.0.1).") var host: String?
    @Option(help: "HTTP + WebSocket port (default 8080; 0 = any free port).") var port: String?
    @Option(name: .customLong("stomp-port"), help: "Plain TCP STOMP port (default 61613; 0 = any; off = disabled).") var stompPort: String?
    @Option(name: .customLong("data-dir"), help: "Data directory (default ./starling-data).") var dataDir: String?
    @Option(name: .customLong("log-level"), help: "trace|debug|info|notice|warning|error|critical (default info).") var logLevel: String?
    @Option(name: .customLong("log-format"), help: "logfmt|json (default logfmt).") var logFormat: String?
    @Option(name: .customLong("echo-path"), help: "WebSocket echo endpoint, e.g. /echo (default off).") var echoPath: String?
    @Option(name: .customLong("web-root"), help: "Directory served at / (default ./web-client).") var webRoot: String?
    @Option(name: .customLong("event-loops"), help: "Event loop threads (default: one per core).") var eventLoops: String?
    @Option(name: .customLong("max-body-size"), help: "Largest STOMP body in bytes (default 1048576).") var maxBodySize: String?
    @Option(name: .customLong("max-pending-bytes"), help: "Outbound bytes queued per client before it is disconnected (default 4194304).") var maxPendingBytes: String?
    @Option(name: .customLong("heartbeat-send-ms"), help: "Fastest server heart-beat in ms (default 10000).") var heartbeatSendMs: String?
    @Option(name: .customLong("heartbeat-receive-ms"), help: "Fastest client heart-beat asked for, in ms (default 10000).") var heartbeatReceiveMs: String?
    @Option(help: "permessage-deflate on|off (default on).") var deflate: String?
    @Option(name: .customLong("set"), help: "Any other setting as name=value (see README), repeatable.") var extra: [String] = []

    func run() async throws {
        var flags: [String: String] = [:]
        let pairs: [(String, String?)] = [
            ("host", self.host), ("port", self.port), ("stomp-port", self.stompPort), ("data-dir", self.dataDir),
            ("log-level", self.logLevel), ("log-format", self.logFormat), ("echo-path", self.echoPath), ("web-root", self.webRoot),
            ("event-loops", self.eventLoops), ("max-body-size", self.maxBodySize), ("max-pending-bytes", self.maxPendingBytes),
            ("heartbeat-send-ms", self.heartbeatSendMs), ("heartbeat-receive-ms", self.heartbeatReceiveMs),
            ("deflate", self.deflate),
        ]
        for (name, value) in pairs { if let value { flags[name] = value } }
        for item in self.extra {
            guard let equals = item.firstIndex(of: "=") else { throw ValidationError("--set expects name=value, got '\(item)'") }
            flags[String(item[..<equals])] = String(item[item.index(after: equals)...])
        }
        let configFile = self.config ?? ProcessInfo.processInfo.environment["STARLING_CONFIG"]
        let givenFlags = flags
        let (configuration, level): (ServerConfiguration, Logger.Level)
        do {
            (configuration, level) = try ServerConfiguration.resolve(flags: flags, configFile: configFile)
        } catch {
            throw ValidationError(error.description)
        }
        LoggingSystem.bootstrap { label in
            var handler = LogfmtHandler(label: label, format: configuration.logFormat)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "starling")
        let server = try StarlingServer(configuration: configuration, logger: logger)
        let group = ServiceGroup(
            configuration: .init(
                services: [.init(service: server), .init(
                    service: ReloadOnHangup(server: server, logger: logger) {
                        try ServerConfiguration.resolve(flags: givenFlags, configFile: configFile).0
                    },
                    successTerminationBehavior: .ignore
                )],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger
            )
        )
        try await group.run()
    }
}

/// SIGHUP: reads the configuration again (file, environment, flags) and applies what can change while running
/// (`StarlingServer.reload`). A bad file is logged and changes nothing.
struct ReloadOnHangup: Service {
    let server: StarlingServer
    let logger: Logger
    let resolve: @Sendable () throws -> ServerConfiguration

    func run() async throws {
        let hangups = await UnixSignalsSequence(trapping: .sighup)
        await withGracefulShutdownHandler {
            for await _ in hangups.cancelOnGracefulShutdown() {
                await self.reload()
            }
        } onGracefulShutdown: {}
    }

    private func reload() async {
        do {
            let result = try await self.server.reload(try self.resolve())
            var metadata: Logger.Metadata = [:]
            if !result.needsRestart.isEmpty { metadata["needs_restart"] = "\(result.needsRestart.joined(separator: ", "))" }
            self.logger.info("config reloaded", metadata: metadata)
        } catch {
            let reason = "\(error)"
            // A certificate problem says so (operators renewing certificates look for it).
            self.logger.error(reason.hasPrefix("tls:") ? "tls reload failed" : "config reload failed", metadata: ["reason": "\(reason)"])
        }
    }
}

/// `starling check-config FILE`: parses and checks a configuration without starting: exit 0 and a summary, or exit 1
/// and the first error (naming the file and line, or the key).
struct CheckConfig: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-config",
        abstract: "Checks a configuration file (and the files it names) without starting the server."
    )

    @Argument(help: "The TOML configuration file.") var file: String

    func run() throws {
        do {
            let (configuration, _) = try ServerConfiguration.resolve(flags: [:], environment: [:], configFile: self.file)
            let summary = try StarlingServer.check(configuration)
            print("starling check-config: \(self.file) is valid")
            for line in summary { print("  \(line)") }
        } catch {
            let text = "\(error)"
            FileHandle.standardError.write(Data("starling check-config: \(text)\n".utf8))
            throw ExitCode.failure
        }
    }
}

/// `starling passwd FILE USER`: sets a user's password in a users file (`[auth] users-file`), PBKDF2-HMAC-SHA256.
struct Passwd: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Adds a user to a users file, or changes its password (read from standard input).",
        discussion: "The password is read from the terminal without echo, or as the first line of standard input when it is not a terminal."
    )

    @Argument(help: "The users file (created if missing).") var file: String
    @Argument(help: "The user name (CONNECT login).") var user: String
    @Option(help: "Comma-separated roles, for access rules.") var roles: String?
    @Option(help: "PBKDF2 iterations (default 600000).") var iterations: Int?

    func run() throws {
        let password: String
        if isatty(STDIN_FILENO) == 1, let typed = getpass("Password for \(self.user): ") {
            password = String(cString: typed)
        } else {
            password = readLine(strippingNewline: true) ?? ""
        }
        let roles = self.roles.map { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } } ?? []
        do {
            try UsersFile.setPassword(file: self.file, user: self.user, password: password, roles: roles, iterations: self.iterations)
        } catch {
            throw ValidationError("\(error)")
        }
        print("starling passwd: \(self.user) set in \(self.file)")
    }
}
