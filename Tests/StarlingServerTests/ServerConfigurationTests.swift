import Foundation
import Logging
import Testing
import StarlingBroker
@testable import StarlingServer

@Suite("Server configuration")
struct ServerConfigurationTests {
    private func write(_ text: String) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("starling-\(UUID().uuidString).toml").path
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test("Flags win over the environment, which wins over the file, which wins over the defaults.")
    func precedence() throws {
        let file = try self.write("""
            # comment
            port = 9000
            stomp-port = 9001
            host = "0.0.0.0"   # trailing comment
            log-level = "debug"
            """)
        let (configuration, level) = try ServerConfiguration.resolve(
            flags: ["port": "9100"], environment: ["STARLING_STOMP_PORT": "off", "STARLING_DEFLATE": "off"], configFile: file
        )
        #expect(configuration.port == 9100)
        #expect(configuration.stompPort == nil)
        #expect(configuration.host == "0.0.0.0")
        #expect(configuration.webSocket.deflate == false)
        #expect(configuration.dataDirectory == "./starling-data")
        #expect(level == .debug)
    }

    @Test("A wrong value names the setting; an unknown key or a section in the file names the line.")
    func errors() throws {
        #expect(throws: ServerConfiguration.SettingError("port: expected an integer in 0...65535, got 'http'")) {
            try ServerConfiguration.resolve(flags: ["port": "http"], environment: [:], configFile: nil)
        }
        #expect(throws: ServerConfiguration.SettingError.self) {
            try ServerConfiguration.resolve(flags: [:], environment: ["STARLING_DEFLATE": "maybe"], configFile: nil)
        }
        let unknown = try self.write("port = 1\nprot = 2\n")
        #expect(throws: ServerConfiguration.SettingError("\(unknown):2: unknown key 'prot'")) {
            try ServerConfiguration.resolve(flags: [:], environment: [:], configFile: unknown)
        }
        let section = try self.write("[cluster]\nnodes = \"x\"\n")
        #expect(throws: ServerConfiguration.SettingError("\(section):1: section [cluster] is not supported by this version")) {
            try ServerConfiguration.resolve(flags: [:], environment: [:], configFile: section)
        }
        #expect(throws: ServerConfiguration.SettingError("unknown setting 'bogus'")) {
            try ServerConfiguration.resolve(flags: ["bogus": "1"], environment: [:], configFile: nil)
        }
        #expect(throws: ServerConfiguration.SettingError.self) {
            try ServerConfiguration.resolve(flags: [:], environment: [:], configFile: "/nonexistent/starling.toml")
        }
    }

    @Test("[[policy]] tables set queue policies by pattern, first match wins, over the top-level queue settings.")
    func policies() throws {
        let file = try self.write("""
            queue-max-deliveries = 7
            [[policy]]
            match = "/queue/orders.#"
            max-deliveries = 2
            ttl-ms = 60000
            overflow = "drop-head"
            [[policy]]
            match = "/queue/*.audit"
            expired = "drop"
            """)
        let (configuration, _) = try ServerConfiguration.resolve(flags: [:], environment: [:], configFile: file)
        let policies = QueuePolicies(defaultPolicy: configuration.queues, rules: configuration.queuePolicyRules)
        let orders = policies.policy(for: "/queue/orders.eu.fr")
        #expect(orders.maxDeliveries == 2 && orders.defaultTTL == 60_000 && orders.overflow == .dropHead)
        #expect(policies.policy(for: "/queue/orders").maxDeliveries == 2, "# matches zero words")
        let audit = policies.policy(for: "/queue/billing.audit")
        #expect(audit.expiredAction == .drop && audit.maxDeliveries == 7, "unset keys keep the top-level value")
        #expect(policies.policy(for: "/queue/other").maxDeliveries == 7)
        #expect(policies.policy(for: "/queue/billing.x.audit").expiredAction == .deadLetter, "* is one word")

        for (text, message) in [
            ("[[policy]]\nmax-deliveries = 2\n", ":1: [[policy]] needs a 'match' destination pattern"),
            ("[[policy]]\nmatch = \"orders\"\n", ":2: match: expected a destination pattern"),
            ("[[policy]]\nmatch = \"/queue/a\"\nmax-deliveries = zero\n", ":3: max-deliveries: expected an integer"),
            ("[[policy]]\nmatch = \"/queue/a\"\ncolour = 1\n", ":3: unknown policy key 'colour'"),
            ("[[policy]]\nmatch = \"/topic/a\"\nmax-length = 1\n", ":3: 'max-length' applies to /queue/ patterns"),
            ("[[policy]]\nmatch = \"/topic/a\"\nslow-consumer = \"later\"\n", ":3: slow-consumer: expected one of disconnect, conflate, drop-oldest"),
            ("[[policy]]\nmatch = \"/room/a\"\nslow-consumer = \"conflate\"\n", ":3: slow-consumer: rooms deliver every message or disconnect"),
            ("[[policy]]\nmatch = \"/queue/a\"\nslow-consumer = \"disconnect\"\n", ":3: 'slow-consumer' applies to /topic/ and /room/ patterns"),
            ("[[policy]]\nmatch = \"/room/a\"\nmax-rate = 1\n", ":3: 'max-rate' applies to /topic/ patterns"),
            ("[[policy]]\nmatch = \"/topic/a\"\nmax-rate = -1\n", ":3: max-rate: expected updates per second"),
            ("[[policy]]\nmatch = \"/topic/a\"\nmax-rate = 2000\n", ":3: max-rate: expected updates per second"),
            ("[[policy]]\nmatch = \"/topic/a\"\nmax-pending-messages = 0\n", ":3: max-pending-messages: expected a number of messages"),
            ("[[policy]]\nmatch = \"/topic/a\"\npersistent = true\n", ":3: policy key 'persistent' is not supported by this version"),
            ("[[policy]]\nmatch = \"/room/a\"\nlast-value = true\n", ":3: 'last-value' applies to /topic/ patterns"),
            ("[[policy]]\nmatch = \"/topic/a\"\nlast-value = yes\n", ":3: last-value: expected true or false"),
            ("[[policy]]\nmatch = \"/queue/a\"\nhistory = 5\n", ":3: 'history' applies to /room/ and /topic/ patterns"),
            ("[[policy]]\nmatch = \"/room/a\"\nhistory = -1\n", ":3: history: expected an integer"),
        ] {
            let bad = try self.write(text)
            do {
                _ = try ServerConfiguration.resolve(flags: [:], environment: [:], configFile: bad)
                Issue.record("expected an error for \(text)")
            } catch {
                #expect(error.description.hasPrefix(bad + message), "\(error.description)")
            }
        }
    }

    @Test("History policies: rooms default to the top-level room settings, topics keep history only where a table says so.")
    func historyPolicies() throws {
        let file = try self.write("""
            room-history = 20
            [[policy]]
            match = "/room/support.#"
            history-ttl-ms = 0
            [[policy]]
            match = "/topic/prices.*"
            history = 5
            [[policy]]
            match = "/topic/news.#"
            history-ttl-ms = 1000
            [[policy]]
            match = "/topic/quotes.#"
            last-value = true
            """)
        let (configuration, _) = try ServerConfiguration.resolve(flags: [:], environment: [:], configFile: file)
        let policies = HistoryPolicies(roomDefault: configuration.rooms, rules: configuration.historyPolicyRules)
        #expect(policies.policy(for: "/room/lobby")?.history == 20)
        let support = policies.policy(for: "/room/support.eu")
        #expect(support?.history == 20 && support?.historyTTL == nil)
        #expect(policies.policy(for: "/topic/prices.aapl")?.history == 5)
        #expect(policies.policy(for: "/topic/prices.a.b") == nil, "* is one word")
        #expect(policies.policy(for: "/topic/news.x") == nil, "a topic table without history keeps none")
        #expect(policies.policy(for: "/topic/other") == nil)
        #expect(policies.coversTopics && policies.coversLastValues)
        let quotes = policies.policy(for: "/topic/quotes.eu.x")
        #expect(quotes?.lastValue == true && quotes?.history == 1 && quotes?.historyTTL == nil, "a last value keeps one, for good")
    }

    @Test("Delivery policies: slow-consumer, max-rate and max-pending-messages by pattern, first match wins (also over tables that set only history).")
    func deliveryPolicies() throws {
        let file = try self.write("""
            [[policy]]
            match = "/topic/prices.fx.#"
            history = 5
            [[policy]]
            match = "/topic/prices.#"
            last-value = true
            slow-consumer = "conflate"
            max-rate = 2.5
            [[policy]]
            match = "/topic/news.*"
            slow-consumer = "drop-oldest"
            max-pending-messages = 50
            [[policy]]
            match = "/room/#"
            slow-consumer = "disconnect"
            """)
        let (configuration, _) = try ServerConfiguration.resolve(flags: [:], environment: [:], configFile: file)
        let policies = DeliveryPolicies(rules: configuration.deliveryPolicyRules)
        #expect(!policies.isTrivial && policies.hasRateCaps)
        let prices = policies.policy(for: "/topic/prices.aapl")
        #expect(prices.slowConsumer == .conflate && prices.maxRate == 2.5)
        #expect(policies.policy(for: "/topic/prices.fx.eur") == .standard, "the first matching table decides")
        let news = policies.policy(for: "/topic/news.eu")
        #expect(news.slowConsumer == .dropOldest && news.maxPendingMessages == 50 && news.maxRate == 0)
        #expect(policies.policy(for: "/topic/other") == .standard)
        #expect(DeliveryPolicies(rules: []).isTrivial)
    }

    @Test("[tls] names its files and listeners; a wrong key, value or a missing file names the line")
    func tlsTable() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("tls-\(UUID().uuidString).toml").path
        defer { try? FileManager.default.removeItem(atPath: file) }
        func resolve(_ text: String) throws -> ServerConfiguration {
            try text.write(toFile: file, atomically: true, encoding: .utf8)
            return try ServerConfiguration.resolve(flags: [:], environment: [:], configFile: file).0
        }
        let defaults = try #require(try resolve("[tls]\ncert-file = \"c.pem\"\nkey-file = \"k.pem\"\n").tls)
        #expect(defaults.certificateFile == "c.pem" && defaults.keyFile == "k.pem")
        #expect(defaults.port == 8443 && defaults.stompPort == 61614 && defaults.minimumVersion == .v1_2 && defaults.clientCAFile == nil)
        let custom = try #require(
            try resolve("port = 1\n[tls]\ncert-file = \"c\"\nkey-file = \"k\"\nport = \"off\"\nstomp-port = 0\nmin-version = \"1.3\"\nclient-ca-file = \"ca\"\n").tls
        )
        #expect(custom.port == nil && custom.stompPort == 0 && custom.minimumVersion == .v1_3 && custom.clientCAFile == "ca")
        #expect(try resolve("port = 1\n").tls == nil)
        for (text, message) in [
            ("[tls]\ncert-file = \"c\"\n", ":1: [tls] needs cert-file and key-file"),
            ("[tls]\ncert-file = \"c\"\nkey-file = \"k\"\ncolour = 1\n", ":4: unknown [tls] key 'colour'"),
            ("[tls]\ncert-file = \"c\"\nkey-file = \"k\"\nport = 70000\n", ":4: port: expected a port 0...65535"),
            ("[tls]\ncert-file = \"c\"\nkey-file = \"k\"\nmin-version = \"1.1\"\n", ":4: min-version: expected \"1.2\" or \"1.3\""),
            ("[tls]\ncert-file = \"c\"\nkey-file = \"k\"\nport = \"off\"\nstomp-port = \"off\"\n", ":1: [tls] has port and stomp-port both"),
            ("[tls]\ncert-file = \"c\"\ncert-file = \"d\"\n", ":3: 'cert-file' appears twice in [tls]"),
            ("[tls]\ncert-file = \"c\"\nkey-file = \"k\"\n[tls]\n", ":4: [tls] appears twice"),
            ("[cluster]\n", ":1: section [cluster] is not supported"),
        ] {
            do {
                _ = try resolve(text)
                Issue.record("expected an error for \(text)")
            } catch let error as ServerConfiguration.SettingError {
                #expect(error.description.contains(message), "\(error.description)")
            }
        }
        var configuration = ServerConfiguration()
        configuration.tls = ServerConfiguration.TLS(certificateFile: "/nonexistent/cert.pem", keyFile: "/nonexistent/key.pem")
        configuration.storage = .memory
        do {
            _ = try StarlingServer(configuration: configuration, logger: Logger(label: "test"))
            Issue.record("a missing cert-file must stop the start")
        } catch let error as StarlingServer.StartError {
            #expect(error.description.hasPrefix("tls: cert-file '/nonexistent/cert.pem'"), "\(error.description)")
        }
    }

    @Test("The WebSocket message limit defaults to the body limit plus room for headers.")
    func messageLimit() throws {
        let (configuration, _) = try ServerConfiguration.resolve(flags: ["max-body-size": "1000"], environment: [:], configFile: nil)
        #expect(configuration.webSocketConfiguration.maxMessageSize == 1000 + 128 * 1024)
        #expect(configuration.webSocketConfiguration.subprotocols == ["v12.stomp", "v11.stomp", "v10.stomp"])
    }
}
