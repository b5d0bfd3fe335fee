import Logging
import NIOCore
import StarlingServer
import StarlingWebSocket

import Glibc

/// A real `StarlingServer` on 127.0.0.1 (ports chosen by the OS), `subscriberCount` subscribers of one
/// topic over WebSocket or plain TCP, and one plain TCP publisher.
///
/// `publishAndAwaitDelivery()` is the measured round: it writes `messagesPerRound` SEND frames (built once,
/// in `start()`) and returns when every subscriber has received every MESSAGE. The client side reads into
/// one reused buffer and counts frames by scanning, so it allocates nothing per message.
final class FanoutFixture: @unchecked Sendable {
    enum Transport: String {
        case webSocket = "ws"
        case tcp
    }

    let transport: Transport
    let subscriberCount: Int
    let messagesPerRound: Int
    var deliveriesPerRound: Int { self.subscriberCount * self.messagesPerRound }

    private var server: StarlingServer?
    private var publisher: LoopbackSocket?
    private var subscribers: [LoopbackSocket] = []
    private var webSocketCounters: [WebSocketFrameCounter] = []
    private var received: [Int] = []
    private var pollDescriptors: [pollfd] = []
    private var sendFrames: [UInt8] = []
    private let readBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 1024, alignment: 16)

    static let destination = "/topic/bench.fanout"

    init(transport: Transport, subscriberCount: Int, messagesPerRound: Int) {
        self.transport = transport
        self.subscriberCount = subscriberCount
        self.messagesPerRound = messagesPerRound
    }

    deinit {
        self.readBuffer.deallocate()
    }

    func start() async throws {
        var configuration = ServerConfiguration()
        configuration.host = "127.0.0.1"
        configuration.port = 0
        configuration.stompPort = 0
        configuration.webRoot = nil
        configuration.eventLoopCount = 2
        configuration.storage = .memory
        // A subscriber never sends heart-beats; keep the server from timing anything out during a run.
        configuration.heartbeat.connectTimeoutMilliseconds = 600_000
        var logger = Logger(label: "starling-benchmark")
        logger.logLevel = .error
        let server = try StarlingServer(configuration: configuration, logger: logger)
        self.server = server
        let addresses = try await server.start()
        guard let httpPort = addresses.http.port, let stompPort = addresses.stomp?.port else {
            throw LoopbackSocket.Failure.unexpected("server did not report its ports")
        }

        for index in 0..<self.subscriberCount {
            let socket: LoopbackSocket
            switch self.transport {
            case .webSocket: socket = try Self.subscribeOverWebSocket(port: httpPort, index: index)
            case .tcp: socket = try Self.subscribeOverTCP(port: stompPort, index: index)
            }
            self.subscribers.append(socket)
            self.pollDescriptors.append(pollfd(fd: socket.descriptor, events: Int16(POLLIN), revents: 0))
        }
        self.webSocketCounters = Array(repeating: WebSocketFrameCounter(), count: self.subscriberCount)
        self.received = Array(repeating: 0, count: self.subscriberCount)

        let publisher = try LoopbackSocket.connect(port: stompPort)
        try publisher.writeAll(Array("CONNECT\naccept-version:1.2\nhost:bench\nheart-beat:0,0\n\n\0".utf8))
        try publisher.readThroughFrame(containing: "CONNECTED")
        self.publisher = publisher
        self.sendFrames = Self.sendFrames(count: self.messagesPerRound)
    }

    /// The measured round. Allocation-free on the client side.
    func publishAndAwaitDelivery() throws {
        guard let publisher = self.publisher else { throw LoopbackSocket.Failure.unexpected("fixture not started") }
        try self.sendFrames.withUnsafeBytes { try publisher.writeAll($0) }
        let target = self.messagesPerRound
        var complete = 0
        for index in 0..<self.subscriberCount {
            self.received[index] -= target
            if self.received[index] >= 0 { complete += 1 }
        }
        while complete < self.subscriberCount {
            let ready = self.pollDescriptors.withUnsafeMutableBufferPointer { poll($0.baseAddress!, nfds_t($0.count), 10_000) }
            if ready < 0 {
                if errno == EINTR { continue }
                throw LoopbackSocket.Failure.system("poll", errno)
            }
            if ready == 0 { throw LoopbackSocket.Failure.unexpected("no MESSAGE for 10 s: \(complete) of \(self.subscriberCount) subscribers complete") }
            for index in 0..<self.subscriberCount where self.pollDescriptors[index].revents != 0 {
                let count = try self.subscribers[index].read(into: self.readBuffer)
                let bytes = UnsafeRawBufferPointer(rebasing: self.readBuffer[0..<count])
                let before = self.received[index]
                switch self.transport {
                case .tcp:
                    self.received[index] += NULFrameCounter.count(in: bytes)
                case .webSocket:
                    let framesBefore = self.webSocketCounters[index].dataFrames
                    self.webSocketCounters[index].consume(bytes)
                    self.received[index] += self.webSocketCounters[index].dataFrames - framesBefore
                }
                if before < 0 && self.received[index] >= 0 { complete += 1 }
            }
        }
    }

    func stop() async {
        for socket in self.subscribers { socket.close() }
        self.publisher?.close()
        self.subscribers = []
        self.publisher = nil
        await self.server?.shutdown()
        self.server = nil
    }

    // MARK: - setup (may allocate)

    /// A JSON-ish ticker update, about the size of a chat or market-data message.
    static let body = #"{"symbol":"STRL","bid":101.25,"ask":101.27,"size":300,"venue":"XLON","seq":1234567}"#

    private static func sendFrames(count: Int) -> [UInt8] {
        let frame = "SEND\ndestination:\(Self.destination)\ncontent-type:application/json\n\n\(Self.body)\0"
        return Array(String(repeating: frame, count: count).utf8)
    }

    private static func subscribeFrames(index: Int) -> String {
        "CONNECT\naccept-version:1.2\nhost:bench\nheart-beat:0,0\n\n\0"
            + "SUBSCRIBE\nid:sub-\(index)\ndestination:\(Self.destination)\nreceipt:ready-\(index)\n\n\0"
    }

    private static func subscribeOverTCP(port: Int, index: Int) throws -> LoopbackSocket {
        let socket = try LoopbackSocket.connect(port: port)
        try socket.writeAll(Array(self.subscribeFrames(index: index).utf8))
        try socket.readThroughFrame(containing: "receipt-id:ready-\(index)\n")
        return socket
    }

    private static func subscribeOverWebSocket(port: Int, index: Int) throws -> LoopbackSocket {
        let socket = try LoopbackSocket.connect(port: port)
        let request = "GET /ws HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            + "Sec-WebSocket-Protocol: v12.stomp\r\n\r\n"
        try socket.writeAll(Array(request.utf8))
        let response = try socket.readUntil("\r\n\r\n")
        guard response.starts(with: Array("HTTP/1.1 101".utf8)) else {
            throw LoopbackSocket.Failure.unexpected("WebSocket upgrade refused: \(String(decoding: response, as: UTF8.self))")
        }
        var frames = ByteBuffer()
        let key: (UInt8, UInt8, UInt8, UInt8) = (0x12, 0x34, 0x56, UInt8(truncatingIfNeeded: index))
        for text in self.subscribeFrames(index: index).split(separator: "\0") {
            WebSocketFrameEncoder.writeFrame(opcode: .text, payload: ByteBuffer(string: text + "\0"), maskingKey: key, to: &frames)
        }
        try socket.writeAll(Array(frames.readableBytesView))
        // The RECEIPT is the last frame before any MESSAGE: its NUL ends what setup reads.
        let afterUpgrade = Array(response[(response.firstRange(of: Array("\r\n\r\n".utf8))!.upperBound)...])
        try socket.readThroughFrame(containing: "receipt-id:ready-\(index)\n", startingWith: afterUpgrade)
        return socket
    }
}
