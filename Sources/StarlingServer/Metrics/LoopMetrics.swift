import StarlingBroker
import StarlingWebSocket

/// The counts of one event loop's connections, kept in plain integers: the delivery path adds to them without an
/// atomic, a lock or a shared cache line. Touched only on its loop; `/metrics` reads them there (`snapshot`).
final class LoopMetrics {
    /// The registry's side, for events rare enough to count there at once (ERRORs, limits, logins).
    let server: ServerMetrics
    /// Open connections, by kind (a gauge).
    var connections = [Int](repeating: 0, count: ConnectionKind.allCases.count)
    /// Sessions past CONNECTED (a gauge).
    var sessions = 0
    /// Messages accepted from SEND frames, by the kind of their destination.
    var received = [Int](repeating: 0, count: DestinationKind.allCases.count)
    /// MESSAGE frames written: to topic subscribers (`/user/` included), to room subscribers and subscribers of topics
    /// with history (streams), to queue consumers. What a slow subscriber's policy skipped is not among them.
    var topicDeliveries = 0
    var streamDeliveries = 0
    var queueDeliveries = 0
    /// Bytes of plain TCP STOMP connections (TLS counted before encryption).
    var tcpBytesIn = 0
    var tcpBytesOut = 0
    /// Messages a slow subscriber did not get: replaced by a newer one (`conflate`), dropped (`drop-oldest`).
    var conflated = 0
    var dropped = 0
    /// The loop's WebSocket connections.
    let webSocket = WebSocketTraffic()

    init(server: ServerMetrics) {
        self.server = server
    }

    struct Snapshot {
        var connections: [Int]
        var sessions: Int
        var received: [Int]
        var queueDeliveries: Int
        var topicDeliveries: Int
        var streamDeliveries: Int
        var tcpBytesIn: Int
        var tcpBytesOut: Int
        var conflated: Int
        var dropped: Int
        var webSocket: (messagesIn: Int, messagesOut: Int, payloadIn: Int, payloadOut: Int, wireIn: Int, wireOut: Int)
        /// WebSocket connections failed for size (close 1009) and for other protocol errors.
        var webSocketFailures: (tooBig: Int, other: Int)
        var subscriptions: Int
        var topicPatterns: [String]
        var queues: [QueueStatistics]
    }

    /// Everything `/metrics` reports of this loop; call on the loop.
    func snapshot(_ loop: LoopBroker) -> Snapshot {
        let traffic = self.webSocket
        return Snapshot(
            connections: self.connections, sessions: self.sessions, received: self.received, queueDeliveries: self.queueDeliveries,
            topicDeliveries: self.topicDeliveries, streamDeliveries: self.streamDeliveries,
            tcpBytesIn: self.tcpBytesIn, tcpBytesOut: self.tcpBytesOut, conflated: self.conflated, dropped: self.dropped,
            webSocket: (
                traffic.messagesIn, traffic.messagesOut, traffic.payloadBytesIn, traffic.payloadBytesOut, traffic.wireBytesIn,
                traffic.wireBytesOut
            ),
            webSocketFailures: (traffic.tooBigFailures, traffic.protocolFailures),
            subscriptions: loop.subscriptionCount, topicPatterns: Array(loop.subscribedPatternCounts.keys), queues: loop.allQueueStats()
        )
    }
}

/// How a client is connected, for the `transport`, `tls` and `deflate` labels.
enum ConnectionKind: Int, CaseIterable {
    case tcp, tcpTLS, webSocket, webSocketDeflate, webSocketTLS, webSocketTLSDeflate
    /// The admin API's own session (`AdminPublisher`): not a client, not reported.
    case `internal`

    /// What the `connections` metrics report.
    static let clientKinds = allCases.filter { $0 != .internal }

    init(webSocket: Bool, tls: Bool, deflate: Bool) {
        self = switch (webSocket, tls, deflate) {
        case (false, false, _): .tcp
        case (false, true, _): .tcpTLS
        case (true, false, false): .webSocket
        case (true, false, true): .webSocketDeflate
        case (true, true, false): .webSocketTLS
        case (true, true, true): .webSocketTLSDeflate
        }
    }

    /// For logs: `tcp`, `tcp+tls`, `ws`, `ws+deflate`, `wss`, `wss+deflate`.
    var name: String {
        switch self {
        case .tcp: "tcp"
        case .tcpTLS: "tcp+tls"
        case .webSocket: "ws"
        case .webSocketDeflate: "ws+deflate"
        case .webSocketTLS: "wss"
        case .webSocketTLSDeflate: "wss+deflate"
        case .internal: "internal"
        }
    }

    var labels: [(String, String)] {
        let webSocket = self == .webSocket || self == .webSocketDeflate || self == .webSocketTLS || self == .webSocketTLSDeflate
        let tls = self == .tcpTLS || self == .webSocketTLS || self == .webSocketTLSDeflate
        let deflate = self == .webSocketDeflate || self == .webSocketTLSDeflate
        return [("transport", webSocket ? "ws" : "tcp"), ("tls", tls ? "true" : "false"), ("deflate", deflate ? "true" : "false")]
    }
}

/// The kind of a SEND's destination, for `starling_messages_received_total{kind}`.
enum DestinationKind: Int, CaseIterable {
    case topic, queue, room, user, tempQueue, presence

    init(_ destination: String) {
        self = if destination.hasPrefix(TopicName.prefix) {
            .topic
        } else if destination.hasPrefix(QueueName.prefix) {
            .queue
        } else if destination.hasPrefix(RoomName.roomPrefix) {
            .room
        } else if destination.hasPrefix(TempQueueName.prefix) {
            .tempQueue
        } else if destination.hasPrefix(RoomName.presencePrefix) {
            .presence
        } else {
            .user
        }
    }

    var label: String {
        switch self {
        case .topic: "topic"
        case .queue: "queue"
        case .room: "room"
        case .user: "user"
        case .tempQueue: "temp-queue"
        case .presence: "presence"
        }
    }
}
