import NIOCore
import StarlingBroker
import StarlingSTOMP
import StarlingStore
import StarlingWebSocket

/// Everything the server needs to start, with the defaults of DESIGN.md's command-line contract.
public struct ServerConfiguration: Sendable {
    /// Address to listen on (HTTP/WebSocket and STOMP TCP).
    public var host = "127.0.0.1"
    /// HTTP + WebSocket port (0 = any free port).
    public var port = 8080
    /// Plain TCP STOMP port; nil = off. 0 = any free port.
    public var stompPort: Int? = 61613
    public var dataDirectory = "./starling-data"
    /// WebSocket echo endpoint for conformance suites (e.g. "/echo"); nil = off.
    public var echoPath: String?
    /// Directory served at `/`; nil = look for `web-client` (see `StaticFiles.defaultRoot`).
    public var webRoot: String?
    /// How log lines are written.
    public var logFormat = LogfmtHandler.Format.logfmt
    /// Event loops (one per core by default).
    public var eventLoopCount = System.coreCount

    public var limits = Limits()
    /// The `[auth]` table; nil when the file has none.
    public var auth: Auth?
    /// `[admin] token`: the bearer token of the admin API; nil = the API is off.
    public var adminToken: String?
    /// The `[tls]` table; nil = no TLS listeners.
    public var tls: TLS?
    /// `[[acl]]` tables, first match wins; none = every connected user may do everything.
    public var accessRules: [AccessRule] = []
    public var heartbeat = Heartbeat()
    public var webSocket = WebSocketSettings()
    /// Where persistent messages are kept: an SQLite database in `dataDirectory`, or memory only.
    public var storage = Storage.sqlite
    /// When the store's writes are fsynced (see `StoreSyncPolicy`).
    public var fsync = StoreSyncPolicy.always
    public var fsyncIntervalMilliseconds = 1000

    public enum Storage: String, Sendable {
        case sqlite
        case memory
    }

    /// How a `/queue/` behaves when no `[[policy]]` table matches it (the top-level `queue-*` settings).
    public var queues = QueuePolicy()
    /// `[[policy]]` tables for queues, first match wins.
    public var queuePolicyRules: [(pattern: DestinationPattern, policy: QueuePolicy)] = []
    /// How a `/room/` keeps history when no `[[policy]]` table matches it (the top-level `room-*` settings).
    public var rooms = HistoryPolicy()
    /// `[[policy]]` tables for rooms, first match wins.
    public var historyPolicyRules: [(pattern: DestinationPattern, policy: HistoryPolicy)] = []
    /// The delivery part (`slow-consumer`, `max-rate`, `max-pending-messages`) of the same tables, in the same order.
    public var deliveryPolicyRules: [(pattern: DestinationPattern, policy: DeliveryPolicy)] = []
    /// How long, and for how many keys, SEND `idempotency-key`s are remembered.
    public var idempotencyWindowMilliseconds = 300_000
    public var idempotencyMaxKeys = 100_000
    /// How long shutdown waits for clients to finish the closing handshakes before dropping them.
    public var shutdownTimeout = TimeAmount.seconds(5)
    /// Over how long shutdown spreads the disconnects (each client told, then closed, in turn), so reconnects do not
    /// hit the next node all at once. 0 = all at once.
    public var drainWindow = TimeAmount.zero

    public struct Limits: Sendable {
        /// Largest STOMP frame body (bytes).
        public var maxBodySize = 1 << 20
        public var maxHeaderCount = 64
        public var maxHeaderLineLength = 8192
        public var maxSubscriptionsPerConnection = 1024
        /// Bytes (keys and values) of a connection's presence metadata in a room (`x-presence-*`), and a member's.
        public var maxPresenceMetaBytes = RoomLimits().maxMetaBytes
        /// Outbound budget per connection: bytes queued for a client that is not reading before it is disconnected.
        public var maxPendingBytes = 4 << 20
        /// Open client connections at most, and from one IP address (checked when a connection is accepted).
        public var maxConnections = 100_000
        /// Frames per second one connection may send; 0 = unlimited.
        public var maxFrameRate = 50_000
        public var maxConnectionsPerAddress = 50_000
        public init() {}
    }

    /// Who may connect (`[auth]`, issue 9). Without an `[auth]` table any login is accepted, but only while the
    /// server listens on loopback.
    public struct Auth: Sendable, Equatable {
        /// A users file (`starling passwd`): CONNECT's login and passcode are checked against it.
        public var usersFile: String?
        /// Accept CONNECTs without a login (as anonymous); with no users file, accept any login (explicitly open).
        public var anonymous = false
        /// JWT bearer tokens: an HS256 secret (`jwt-secret`, or read from `jwt-secret-file`), a PEM public key file
        /// for RS256/ES256, the expected `aud` and `iss`, and the claims naming the user and the roles.
        public var jwtSecret: String?
        public var jwtPublicKeyFile: String?
        public var jwtAudience: String?
        public var jwtIssuer: String?
        public var jwtUserClaim = "sub"
        public var jwtRolesClaim = "roles"
        /// Clock skew allowed on `exp` and `nbf`; a session lasts until its token's `exp` plus this.
        public var jwtLeewaySeconds = 30
        /// Failed logins allowed per client address within the window before its CONNECTs are refused unchecked.
        public var failedLoginLimit = 5
        public var failedLoginWindowSeconds = 60
        public init() {}
    }

    public struct Heartbeat: Sendable {
        /// Fastest we send heart-beats (ms); the client may ask for slower. 0 = never.
        public var sendMilliseconds = 10_000
        /// Fastest we want the client's heart-beats (ms). 0 = we don't check.
        public var receiveMilliseconds = 10_000
        /// A client that sent nothing for `grace x` its negotiated interval is disconnected.
        public var graceFactor = 1.5
        /// A connection that sends no CONNECT within this many ms is closed.
        public var connectTimeoutMilliseconds = 10_000
        public init() {}
    }

    public struct WebSocketSettings: Sendable {
        /// Largest WebSocket message (after inflation); nil = the STOMP body limit plus 128 KiB for the frame's headers.
        public var maxMessageSize: Int?
        public var deflate = true
        public var deflateWindowBits = 15
        public var deflateMemoryLevel = 8
        public var deflateMinimumSize = 64
        /// Keep the server compressor's LZ77 window across messages. Off (the default) answers every offer with
        /// `server_no_context_takeover`: each message is compressed on its own, so one compressor per event
        /// loop serves every connection and a fan-out compresses each message once instead of once per
        /// subscriber. On gives better ratios for small similar messages, at one compressor per connection.
        public var deflateContextTakeover = false
        /// Let clients keep their compressor's window across messages. Off (the default) answers with
        /// `client_no_context_takeover`, so an idle connection holds no inflater (~40 KiB of zlib state).
        public var deflateClientContextTakeover = false
        /// Origins browsers may open WebSockets from; empty = any.
        public var allowedOrigins: [String] = []
        public init() {}
    }

    public init() {}

    var parserLimits: STOMPParserLimits {
        STOMPParserLimits(
            maxCommandLength: 32,
            maxHeaderCount: self.limits.maxHeaderCount,
            maxHeaderLineLength: self.limits.maxHeaderLineLength,
            maxBodySize: self.limits.maxBodySize
        )
    }

    var webSocketConfiguration: WebSocketConfiguration {
        var configuration = WebSocketConfiguration()
        let messageLimit = self.webSocket.maxMessageSize ?? (self.limits.maxBodySize + 128 * 1024)
        configuration.maxMessageSize = messageLimit
        configuration.maxFrameSize = messageLimit
        configuration.subprotocols = ["v12.stomp", "v11.stomp", "v10.stomp"]
        configuration.allowedOrigins = self.webSocket.allowedOrigins
        if self.webSocket.deflate {
            var deflate = PerMessageDeflateConfiguration()
            deflate.serverMaxWindowBits = self.webSocket.deflateWindowBits
            deflate.memoryLevel = self.webSocket.deflateMemoryLevel
            deflate.minimumSizeToCompress = self.webSocket.deflateMinimumSize
            deflate.serverNoContextTakeover = !self.webSocket.deflateContextTakeover
            deflate.clientNoContextTakeover = !self.webSocket.deflateClientContextTakeover
            configuration.deflate = deflate
        } else {
            configuration.deflate = nil
        }
        return configuration
    }
}
