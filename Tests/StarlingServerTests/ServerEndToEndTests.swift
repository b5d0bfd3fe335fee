import Logging
import NIOCore
import StarlingSTOMP
import Testing
@testable import StarlingServer

/// A real server on port 0, built the way the executable builds it, and raw TCP STOMP clients.
@Suite("Server end to end")
struct ServerEndToEndTests {
    private func withServer(_ body: (StarlingServer, Int) async throws -> Void) async throws {
        var configuration = ServerConfiguration()
        configuration.port = 0
        configuration.stompPort = 0
        configuration.eventLoopCount = 2
        // The suites run in parallel on few cores: a client may wait long for its turn to send CONNECT.
        configuration.heartbeat.connectTimeoutMilliseconds = 120_000
        configuration.webRoot = nil
        configuration.storage = .memory
        let server = try StarlingServer(configuration: configuration, logger: Logger(label: "test"))
        let addresses = try await server.start()
        do {
            try await body(server, addresses.stomp!.port!)
        } catch {
            await server.shutdown()
            throw error
        }
        await server.shutdown()
    }

    @Test("A TCP client connects, subscribes with a receipt, and receives its own message with headers carried through.")
    func publishSubscribe() async throws {
        try await self.withServer { _, port in
            let client = try await TestSTOMPClient.connect(port: port)
            try await client.send("CONNECT\naccept-version:1.1,1.2\nhost:x\n\n\0")
            try await client.send("SUBSCRIBE\nid:s1\ndestination:/topic/a.#\nreceipt:r1\n\n\0")
            let first = try await client.frames(2)
            #expect(first.map(\.command) == [.connected, .receipt])
            #expect(first[0].headers["version"] == "1.2")
            #expect(first[1].headers["receipt-id"] == "r1")

            try await client.send("SEND\ndestination:/topic/a.b\ncontent-type:text/plain\nx-k:v\\cw\ncontent-length:5\n\nhe\0lo\0")
            let message = try await client.frames(1)
            #expect(message.first?.command == .message)
            #expect(message.first?.headers["subscription"] == "s1")
            #expect(message.first?.headers["destination"] == "/topic/a.b")
            #expect(message.first?.headers["x-k"] == "v:w")
            #expect(message.first?.headers["content-type"] == "text/plain")
            #expect(message.first?.headers["message-id"] != nil)
            #expect(message.first.map { Array($0.body.readableBytesView) } == Array("he\0lo".utf8))
            try await client.close()
        }
    }

    @Test("A frame split into single bytes and several frames in one write are both understood.")
    func splitFrames() async throws {
        try await self.withServer { _, port in
            let client = try await TestSTOMPClient.connect(port: port)
            for byte in "CONNECT\naccept-version:1.2\n\n\0".utf8 {
                try await client.channel.outbound.write(ByteBuffer(bytes: [byte]))
            }
            try await client.send("\n\nSUBSCRIBE\nid:1\ndestination:/topic/t\nreceipt:a\n\n\0SEND\ndestination:/topic/t\n\nx\0\r\n")
            let frames = try await client.frames(3)
            #expect(frames.map(\.command) == [.connected, .receipt, .message])
            try await client.close()
        }
    }

    @Test("A protocol error gets an ERROR with the receipt id, then the server closes the connection.")
    func protocolError() async throws {
        try await self.withServer { _, port in
            let client = try await TestSTOMPClient.connect(port: port)
            try await client.send("CONNECT\naccept-version:1.2\n\n\0SEND\ndestination:/nowhere\nreceipt:77\n\n\0")
            let frames = try await client.frames(3)
            #expect(frames.map(\.command) == [.connected, .error])
            #expect(frames.last?.headers["receipt-id"] == "77")
            #expect(frames.last?.headers["message"]?.contains("/nowhere") == true)
        }
    }

    @Test("Shutdown tells a TCP client with an ERROR frame and closes it.")
    func shutdown() async throws {
        var configuration = ServerConfiguration()
        configuration.port = 0
        configuration.stompPort = 0
        configuration.webRoot = nil
        configuration.storage = .memory
        let server = try StarlingServer(configuration: configuration, logger: Logger(label: "test"))
        let addresses = try await server.start()
        let client = try await TestSTOMPClient.connect(port: addresses.stomp!.port!)
        try await client.send("CONNECT\naccept-version:1.2\n\n\0")
        #expect(try await client.frames(1).first?.command == .connected)
        async let frames = client.frames(2)
        await server.shutdown()
        let received = try await frames
        #expect(received.first?.command == .error)
        #expect(received.first?.headers["message"] == "server shutting down")
        #expect(received.count == 1)  // then closed
    }
}
