/// Why the server sent an ERROR frame, for `starling_errors_total{reason}`: a small fixed set, so a client's input
/// can never grow the label set.
enum ErrorReason: String, CaseIterable {
    case `protocol`
    case limit
    case auth
    case access
    case token
    case slowConsumer = "slow_consumer"
    case shutdown
    /// A connection ended through the admin API.
    case admin
}

/// A limit a client ran into, for `starling_limits_hit_total{limit}`; named as its setting.
enum LimitName: String, CaseIterable {
    case maxConnections = "max-connections"
    case maxConnectionsPerIP = "max-connections-per-ip"
    case maxFrameRate = "max-frame-rate"
    case maxBodySize = "max-body-size"
    case maxHeaderCount = "max-header-count"
    case maxHeaderLength = "max-header-length"
    case maxSubscriptions = "max-subscriptions"
    case maxTransactions = "max-transactions"
    case maxPendingBytes = "max-pending-bytes"
    case maxHeldInput = "max-held-input"
    case connectTimeout = "connect-timeout"
    case failedLoginLimit = "failed-login-limit"
    case allowedOrigins = "allowed-origins"
    case maxMessageSize = "max-message-size"
}

extension ErrorReason {
    /// The reason, and the limit if one was hit, of an ERROR whose `message` is `message`. Read from the message's
    /// start: every ERROR goes through `STOMPConnection.fail`, and the messages are the server's own.
    static func classify(_ message: String) -> (ErrorReason, LimitName?) {
        for (prefix, reason, limit) in Self.prefixes where message.hasPrefix(prefix) { return (reason, limit) }
        return (.protocol, nil)
    }

    /// Message starts, most specific first.
    private static let prefixes: [(String, ErrorReason, LimitName?)] = [
        ("authentication failed: too many failed", .auth, .failedLoginLimit),
        ("authentication failed", .auth, nil),
        ("access denied", .access, nil),
        ("token", .token, nil),
        ("too many subscriptions", .limit, .maxSubscriptions),
        ("too many open transactions", .limit, .maxTransactions),
        ("too many frames in transaction", .limit, .maxTransactions),
        ("too much data held", .limit, .maxHeldInput),
        ("no CONNECT frame within", .limit, .connectTimeout),
        ("slow consumer", .slowConsumer, .maxPendingBytes),
        ("disconnected by an administrator", .admin, nil),
        // `STOMPParseError` descriptions of the parser's limits.
        ("Body larger than", .limit, .maxBodySize),
        ("More than", .limit, .maxHeaderCount),
        ("Header line longer than", .limit, .maxHeaderLength),
        ("Command line longer than", .limit, .maxHeaderLength),
    ]
}
