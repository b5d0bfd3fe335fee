import NIOCore
import StarlingSTOMP
import StarlingWebSocket

/// What every connection of a run is told about the target.
struct ConnectionSettings: Sendable {
    var target: TargetURL
    var login: String?
    var passcode: String?
    var virtualHost: String?
    var deflate: Bool
    /// `heart-beat` both ways in ms; 0 = none.
    var heartbeatMilliseconds: Int
    var connectTimeout: TimeAmount
}

/// One client connection: TCP, then the HTTP upgrade, then WebSocket frames carrying STOMP.
///
/// Event-loop-bound (not Sendable). The runner reaches it through `NIOLoopBound` on its loop. Roles: a
/// connection may hold subscriptions (`subscriptions`), publish (`publisher`), or just idle with heart-beats.
/// Hot-path rule: no locks and no per-message allocation beyond what the STOMP parser needs for headers;
/// writes are batched into `outbound` and flushed once per batch (or per read for ACKs).
final class ClientConnection: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    enum State: Equatable {
        case connecting
        case upgrading
        case awaitingConnected
        case open
        case closed
    }

    let settings: ConnectionSettings
    let stats: LoopStats
    /// Succeeds on CONNECTED; fails with `LoadtestError.refused` otherwise.
    let ready: EventLoopPromise<Void>
    let eventLoop: EventLoop
    private(set) var state = State.connecting
    var context: ChannelHandlerContext?
    private var handshake: WebSocketClientHandshake
    private var frameParser: WebSocketFrameParser
    /// STOMP from the server: MESSAGE frames through the byte-level scanner, the rest through the full parser.
    private var receiver: FrameReceiver
    private var deflate: ClientDeflate?
    /// A fragmented message being reassembled, and whether its first frame had RSV1.
    private var fragments: ByteBuffer?
    private var fragmentsCompressed = false
    private var inflated = ByteBuffer()
    var scratch = ByteBuffer()
    private var compressed = ByteBuffer()
    var outbound = ByteBuffer()
    private var maskState: UInt32
    private var receipts: [String: EventLoopPromise<Void>] = [:]
    private var nextReceipt = 0
    private var closingDeliberately = false
    private var readyCompleted = false
    /// Why the connection ended, when the server ended it (ERROR message, close frame).
    private var closeReason: String?
    private var heartbeatTask: RepeatedTask?
    var subscriptions: [SubscriptionState] = []
    var publisher: PublisherState?
    /// `--stalled-percent`: this subscriber stopped reading (see `stall()`); its MESSAGEs are not verified.
    private(set) var stalled = false
    /// Self, loop-bound, for closures the event loop runs later (set while the handler is in a pipeline).
    var bound: NIOLoopBound<ClientConnection>?
    var pumpScheduled = false
    /// Receive time of the read being processed (one clock read per read, not per message).
    var now: UInt64 = 0

    init(settings: ConnectionSettings, stats: LoopStats, eventLoop: EventLoop) {
        self.settings = settings
        self.stats = stats
        self.ready = eventLoop.makePromise()
        self.eventLoop = eventLoop
        self.handshake = WebSocketClientHandshake(offerDeflate: settings.deflate)
        self.frameParser = WebSocketFrameParser(maxFrameSize: 16 << 20, expectMasked: false, allowCompressionBit: false)
        self.maskState = UInt32.random(in: 1...UInt32.max)
        self.receiver = FrameReceiver(
            limits: STOMPParserLimits(maxCommandLength: 32, maxHeaderCount: 256, maxHeaderLineLength: 65_536,
                                      maxBodySize: 16 << 20),
            runID: stats.plan.runIDBytes)
    }

    // MARK: - Channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        self.bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        self.outbound = context.channel.allocator.buffer(capacity: 4096)
        let bound = self.bound!
        let timeout = self.settings.connectTimeout
        context.eventLoop.scheduleTask(in: timeout) {
            let connection = bound.value
            guard connection.state != .open && connection.state != .closed else { return }
            connection.failConnection("no CONNECTED frame within \(timeout.nanoseconds / 1_000_000_000) s")
        }
        if context.channel.isActive {
            self.channelActive(context: context)
        }
    }

    func channelActive(context: ChannelHandlerContext) {
        guard self.state == .connecting else { return }
        self.state = .upgrading
        var request = context.channel.allocator.buffer(capacity: 256)
        request.writeString(self.handshake.request(target: self.settings.target))
        context.writeAndFlush(self.wrapOutboundOut(request), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = self.unwrapInboundIn(data)
        self.now = MonotonicClock.nanoseconds()
        if self.stalled { self.stats.stalledBytes += UInt64(buffer.readableBytes) }
        if self.state == .upgrading {
            switch self.handshake.feed(&buffer) {
            case .needMoreData:
                return
            case .refused(let reason):
                self.failConnection("WebSocket upgrade refused: \(reason)")
                return
            case .upgraded(let parameters):
                if let parameters {
                    self.deflate = ClientDeflate(parameters: parameters)
                    self.frameParser.allowCompressionBit = true
                }
                self.state = .awaitingConnected
                self.sendConnect()
            }
        }
        do {
            while self.state != .closed, let frame = try self.frameParser.next(&buffer) {
                self.handleWebSocketFrame(frame)
            }
        } catch {
            self.failConnection("WebSocket protocol error from the server: \(error)")
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        self.flushOutbound()
        self.stats.publishFlow()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable, self.publisher != nil {
            self.schedulePump()
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if self.closeReason == nil { self.closeReason = "\(error)" }
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        let previous = self.state
        self.state = .closed
        self.heartbeatTask?.cancel()
        self.heartbeatTask = nil
        if previous == .open && !self.closingDeliberately && self.stalled {
            // A stalled subscriber the broker gave up on: expected, reported apart from `dropped`.
            self.stats.stalledClosed += 1
            let reason = self.closeReason ?? "connection closed by the server"
            if self.stats.stalledCloseReasons.count < 10 && !self.stats.stalledCloseReasons.contains(reason) {
                self.stats.stalledCloseReasons.append(reason)
            }
        } else if previous == .open && !self.closingDeliberately {
            self.stats.dropped += 1
            self.stats.addError("connection dropped by the server" + (self.closeReason.map { ": \($0)" } ?? ""))
        }
        let reason: String
        switch previous {
        case .connecting, .upgrading: reason = "connection closed during the WebSocket handshake"
        case .awaitingConnected: reason = "connection closed before CONNECTED"
        default: reason = "connection closed"
        }
        let error = LoadtestError.refused(self.closeReason ?? reason)
        self.failReady(error)
        for (_, promise) in self.receipts { promise.fail(error) }
        self.receipts = [:]
        self.stats.connections[ObjectIdentifier(self)] = nil
        self.bound = nil
        context.fireChannelInactive()
    }

    // MARK: - WebSocket

    private func handleWebSocketFrame(_ frame: WebSocketFrame) {
        switch frame.opcode {
        case .text, .binary:
            if frame.fin && self.fragments == nil {
                self.deliver(frame.payload, compressed: frame.rsv1)
            } else {
                self.fragments = frame.payload
                self.fragmentsCompressed = frame.rsv1
            }
        case .continuation:
            guard var message = self.fragments else {
                self.failConnection("WebSocket continuation frame without a message")
                return
            }
            self.fragments = nil
            var payload = frame.payload
            message.writeBuffer(&payload)
            if frame.fin {
                self.deliver(message, compressed: self.fragmentsCompressed)
            } else {
                self.fragments = message
            }
        case .ping:
            self.writeWebSocketFrame(opcode: .pong, payload: frame.payload, compress: false)
            self.flushOutbound()
        case .pong:
            break
        case .close:
            var payload = frame.payload
            let code = payload.readInteger(as: UInt16.self)
            let text = payload.readString(length: payload.readableBytes) ?? ""
            if self.closeReason == nil {
                self.closeReason = "server closed the WebSocket" + (code.map { " (code \($0)\(text.isEmpty ? "" : ": " + text))" } ?? "")
            }
            if self.state == .open || self.state == .awaitingConnected {
                self.failConnection(self.closeReason!)
            }
        }
    }

    /// One whole WebSocket message: STOMP frames (usually exactly one).
    private func deliver(_ payload: ByteBuffer, compressed: Bool) {
        var input: ByteBuffer
        if compressed {
            guard let deflate = self.deflate, deflate.decompress(payload, into: &self.inflated, cache: self.stats.inflateCache)
            else {
                self.failConnection("cannot inflate a compressed message from the server")
                return
            }
            input = self.inflated
        } else {
            input = payload
        }
        do {
            while self.state != .closed, let received = try self.receiver.next(&input) {
                switch received {
                case .message(let message): self.handleMessage(message)
                case .frame(let frame): self.handleSTOMPFrame(frame)
                }
            }
        } catch {
            self.failConnection("STOMP parse error on a frame from the server: \(error)")
        }
    }

    /// Appends one masked frame (RFC 6455 §5.3) to `outbound`, compressed when deflate was negotiated.
    func writeWebSocketFrame(opcode: WebSocketOpcode, payload: ByteBuffer, compress: Bool) {
        if compress, let deflate = self.deflate, deflate.compress(payload, into: &self.compressed) {
            WebSocketFrameEncoder.writeFrame(
                opcode: opcode, rsv1: true, payload: self.compressed, maskingKey: self.nextMask(), to: &self.outbound)
            return
        }
        WebSocketFrameEncoder.writeFrame(opcode: opcode, payload: payload, maskingKey: self.nextMask(), to: &self.outbound)
    }

    /// A fresh masking key per frame from a per-connection xorshift32 (the server only needs it to vary).
    @inline(__always)
    private func nextMask() -> (UInt8, UInt8, UInt8, UInt8) {
        var x = self.maskState
        x ^= x << 13
        x ^= x >> 17
        x ^= x << 5
        self.maskState = x
        return (UInt8(truncatingIfNeeded: x), UInt8(truncatingIfNeeded: x >> 8), UInt8(truncatingIfNeeded: x >> 16),
                UInt8(truncatingIfNeeded: x >> 24))
    }

    func flushOutbound() {
        guard self.outbound.readableBytes > 0, let context = self.context, self.state != .closed else { return }
        let buffer = self.outbound
        self.outbound = context.channel.allocator.buffer(capacity: max(4096, min(buffer.capacity, 1 << 16)))
        context.writeAndFlush(self.wrapOutboundOut(buffer), promise: nil)
    }

    // MARK: - STOMP

    func writeSTOMP(_ frame: STOMPFrame) {
        self.scratch.clear()
        STOMPFrameEncoder.write(frame, to: &self.scratch, version: .v1_2)
        self.writeWebSocketFrame(opcode: .text, payload: self.scratch, compress: true)
    }

    private func sendConnect() {
        var headers = STOMPHeaders()
        headers.add("accept-version", "1.2")
        headers.add("host", self.settings.virtualHost ?? self.settings.target.host)
        if let login = self.settings.login { headers.add("login", login) }
        if let passcode = self.settings.passcode { headers.add("passcode", passcode) }
        let beat = self.settings.heartbeatMilliseconds
        headers.add("heart-beat", "\(beat),\(beat)")
        self.writeSTOMP(STOMPFrame(.connect, headers: headers))
        self.flushOutbound()
    }

    private func handleSTOMPFrame(_ frame: STOMPFrame) {
        switch frame.command {
        case .message:
            self.handleMessage(ReceivedMessage(frame: frame, runID: self.stats.plan.runIDBytes))
        case .receipt:
            if let id = frame.headers["receipt-id"], let promise = self.receipts.removeValue(forKey: id) {
                promise.succeed()
            }
        case .connected:
            guard self.state == .awaitingConnected else { return }
            self.state = .open
            self.stats.opened += 1
            self.stats.connections[ObjectIdentifier(self)] = self
            self.startHeartbeats(serverHeader: frame.headers["heart-beat"])
            self.readyCompleted = true
            self.ready.succeed()
        case .error:
            var body = frame.body
            let message = frame.headers["message"] ?? body.readString(length: min(body.readableBytes, 200)) ?? "?"
            self.closeReason = "STOMP ERROR from the server: \(message)"
            self.failConnection(self.closeReason!)
        default:
            break
        }
    }

    /// STOMP 1.2 "Heart-beating": we send every max(ours, server's wish) ms when both are non-zero.
    private func startHeartbeats(serverHeader: String?) {
        let ours = self.settings.heartbeatMilliseconds
        guard ours > 0, let serverHeader else { return }
        let parts = serverHeader.split(separator: ",")
        guard parts.count == 2, let wanted = Int(parts[1].trimmingSpaces), wanted > 0, let bound = self.bound,
            let context = self.context
        else { return }
        let interval = TimeAmount.milliseconds(Int64(max(ours, wanted)))
        self.heartbeatTask = context.eventLoop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { _ in
            let connection = bound.value
            guard connection.state == .open else { return }
            var beat = ByteBuffer()
            beat.writeInteger(UInt8(ascii: "\n"))
            connection.writeWebSocketFrame(opcode: .text, payload: beat, compress: false)
            connection.flushOutbound()
        }
    }

    /// Sends `frame` with a `receipt` header; the future completes with the RECEIPT.
    func sendWithReceipt(_ frame: STOMPFrame) -> EventLoopFuture<Void> {
        guard let context = self.context, self.state == .open else {
            return self.eventLoop.makeFailedFuture(
                LoadtestError.refused(self.closeReason ?? "connection not open"))
        }
        var frame = frame
        self.nextReceipt += 1
        let id = "r\(self.nextReceipt)"
        frame.headers.add("receipt", id)
        let promise = context.eventLoop.makePromise(of: Void.self)
        self.receipts[id] = promise
        let timeout = self.settings.connectTimeout
        let bound = self.bound
        context.eventLoop.scheduleTask(in: timeout) {
            guard let connection = bound?.value, let pending = connection.receipts.removeValue(forKey: id) else { return }
            pending.fail(LoadtestError.refused(
                "no RECEIPT for \(frame.command.rawValue) within \(timeout.nanoseconds / 1_000_000_000) s"))
        }
        self.writeSTOMP(frame)
        self.flushOutbound()
        return promise.futureResult
    }

    /// Fails the setup promises, notes the reason and closes (the server misbehaved or refused).
    func failConnection(_ reason: String) {
        if self.closeReason == nil { self.closeReason = reason }
        let error = LoadtestError.refused(reason)
        self.failReady(error)
        for (_, promise) in self.receipts { promise.fail(error) }
        self.receipts = [:]
        self.context?.close(promise: nil)
    }

    private func failReady(_ error: LoadtestError) {
        guard !self.readyCompleted else { return }
        self.readyCompleted = true
        self.ready.fail(error)
    }

    /// Stops reading the socket (`autoRead` off): the broker's buffers for this connection fill. Its MESSAGEs
    /// are counted apart from here on (`stalledDelivered`), never verified.
    func stall() {
        guard !self.stalled, self.state == .open, let context = self.context else { return }
        self.stalled = true
        self.stats.stalledConnections += 1
        try? context.channel.syncOptions?.setOption(ChannelOptions.autoRead, value: false)
    }

    /// A stalled connection reads again (after the run), so a close by the broker queued behind its backlog shows.
    func resumeReading() {
        guard self.stalled, self.state == .open, let context = self.context else { return }
        try? context.channel.syncOptions?.setOption(ChannelOptions.autoRead, value: true)
    }

    /// Sends a STOMP heart-beat (an EOL, allowed between frames whatever was negotiated). To a socket the broker
    /// closed, and whose kernel gave up sending it, the answer is a TCP reset: the only way to learn of such a close.
    func poke() {
        guard self.state == .open else { return }
        var beat = ByteBuffer()
        beat.writeInteger(UInt8(ascii: "\n"))
        self.writeWebSocketFrame(opcode: .text, payload: beat, compress: false)
        self.flushOutbound()
    }

    /// Closes on our initiative: a WebSocket close frame (1000), then the TCP connection.
    func close() {
        guard self.state != .closed, let context = self.context else { return }
        self.closingDeliberately = true
        var payload = ByteBuffer()
        payload.writeInteger(UInt16(1000))
        self.writeWebSocketFrame(opcode: .close, payload: payload, compress: false)
        self.flushOutbound()
        context.close(promise: nil)
    }
}
