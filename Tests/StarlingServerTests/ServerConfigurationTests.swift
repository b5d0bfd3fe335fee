import Foundation
import Logging
import Testing
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
        let section = try self.write("[[policy]]\nmatch = \"/topic/#\"\n")
        #expect(throws: ServerConfiguration.SettingError.self) {
            try ServerConfiguration.resolve(flags: [:], environment: [:], configFile: section)
        }
        #expect(throws: ServerConfiguration.SettingError("unknown setting 'bogus'")) {
            try ServerConfiguration.resolve(flags: ["bogus": "1"], environment: [:], configFile: nil)
        }
        #expect(throws: ServerConfiguration.SettingError.self) {
            try ServerConfiguration.resolve(flags: [:], environment: [:], configFile: "/nonexistent/starling.toml")
        }
    }

    @Test("The WebSocket message limit defaults to the body limit plus room for headers.")
    func messageLimit() throws {
        let (configuration, _) = try ServerConfiguration.resolve(flags: ["max-body-size": "1000"], environment: [:], configFile: nil)
        #expect(configuration.webSocketConfiguration.maxMessageSize == 1000 + 128 * 1024)
        #expect(configuration.webSocketConfiguration.subprotocols == ["v12.stomp", "v11.stomp", "v10.stomp"])
    }
}
