import NIOConcurrencyHelpers
import NIOCore

/// Open client connections, in all and per IP address, shared by every listener (`max-connections`,
/// `max-connections-per-ip`; issue 9).
final class ConnectionCounter: Sendable {
    private let state = NIOLockedValueBox<(total: Int, perAddress: [String: Int], maxTotal: Int, maxPerAddress: Int)>((0, [:], 0, 0))

    init(maxTotal: Int, maxPerAddress: Int) {
        self.setLimits(maxTotal: maxTotal, maxPerAddress: maxPerAddress)
    }

    /// New limits (a configuration reload) for connections accepted from now on; open ones stay.
    func setLimits(maxTotal: Int, maxPerAddress: Int) {
        self.state.withLockedValue { state in
            state.maxTotal = maxTotal
            state.maxPerAddress = maxPerAddress
        }
    }

    /// Counts a new connection from `address`, or says which limit it would pass.
    func admit(_ address: String) -> String? {
        self.state.withLockedValue { state in
            if state.total >= state.maxTotal { return "server connection limit reached (max-connections \(state.maxTotal))" }
            let count = state.perAddress[address, default: 0]
            if count >= state.maxPerAddress { return "too many connections from this address (max-connections-per-ip \(state.maxPerAddress))" }
            state.total += 1
            state.perAddress[address] = count + 1
            return nil
        }
    }

    func release(_ address: String) {
        self.state.withLockedValue { state in
            state.total -= 1
            let count = state.perAddress[address, default: 1] - 1
            state.perAddress[address] = count > 0 ? count : nil
        }
    }

    var open: Int { self.state.withLockedValue { $0.total } }
}

/// First handler of every accepted connection: counts it, or answers a refusal (an ERROR frame on the STOMP port,
/// 503 on the HTTP port) and closes it before anything else reads it.
final class ConnectionGate: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny
    typealias OutboundOut = ByteBuffer

    enum Listener {
        case stomp
        case http
    }

    private let counter: ConnectionCounter
    private let kind: Listener
    private let metrics: ServerMetrics
    private var counted: String?

    init(counter: ConnectionCounter, kind: Listener, metrics: ServerMetrics) {
        self.counter = counter
        self.kind = kind
        self.metrics = metrics
    }

    func channelActive(context: ChannelHandlerContext) {
        let address = context.channel.remoteAddress?.ipAddress ?? "unknown"
        if let refusal = self.counter.admit(address) {
            self.metrics.limitHit(refusal.hasPrefix("too many connections from") ? .maxConnectionsPerIP : .maxConnections)
            if self.kind == .stomp { self.metrics.error(.limit) }
            let reply = switch self.kind {
            case .stomp: "ERROR\nmessage:\(refusal)\n\n\0"
            case .http: "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: \(refusal.utf8.count + 1)\r\nconnection: close\r\n\r\n\(refusal)\n"
            }
            let channel = context.channel
            context.writeAndFlush(self.wrapOutboundOut(ByteBuffer(string: reply))).whenComplete { _ in channel.close(promise: nil) }
            return
        }
        self.counted = address
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // A refused connection's input goes nowhere.
        if self.counted != nil { context.fireChannelRead(data) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let address = self.counted {
            self.counted = nil
            self.counter.release(address)
            context.fireChannelInactive()
        }
    }
}
