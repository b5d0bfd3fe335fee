import NIOCore
import NIOPosix
import StarlingSTOMP

/// What a connection is configured with: what all connections of one configuration share, and what is its own.
extension STOMPConnection {
    /// What every connection made from one server configuration shares (built once per start or reload, and held
    /// by reference: an idle connection pays 8 bytes for it). What differs per connection is in `Identity`.
    struct Settings {
        var parserLimits = STOMPParserLimits()
        var session: SessionStateMachine.SharedConfiguration
        /// Extra silence allowed past the negotiated client heart-beat interval, as a multiple of it.
        var heartbeatGraceFactor = 1.5
        /// A connection that has not sent CONNECT within this time is closed.
        var connectTimeout = TimeAmount.seconds(10)
        /// Bytes held for a slow client (beyond its socket's buffers) before it is disconnected (`max-pending-bytes`).
        var maxPendingBytes = 4 << 20
        var allocator = ByteBufferAllocator()
        /// Set when CONNECT's credentials are checked (`[auth] users-file`).
        var authentication: Authentication?
        /// Set when the configuration has `[[acl]]` tables.
        var access: AccessControl?
        /// Frames per second a client may send (a token bucket holding one second's worth); 0 = unlimited.
        var maxFrameRate = 0.0
    }

    /// The one `Settings` of a configuration, which every connection made from it references.
    final class SharedSettings: Sendable {
        let value: Settings
        init(_ value: Settings) { self.value = value }
    }

    /// What is this connection's own.
    struct Identity {
        var sessionID: String
        /// How the client is connected, for logs and metrics.
        var kind: ConnectionKind
        /// A JWT from the WebSocket handshake, used when CONNECT has no passcode.
        var handshakeToken: String?
        /// The highest STOMP version the transport allows (a WebSocket subprotocol can cap it).
        var maxVersion: STOMPVersion?
    }

    /// What checks CONNECT's login and passcode, and where (off the event loops).
    struct Authentication {
        var authenticator: ServerAuthenticator
        var pool: NIOThreadPool
        var limiter: FailedLoginLimiter
    }
}
