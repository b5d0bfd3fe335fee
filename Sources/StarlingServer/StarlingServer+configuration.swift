import NIOCore
import NIOPosix
import StarlingBroker

/// What the server builds from its configuration: the login check, the template of every connection's settings, and
/// the checks `starling check-config` runs.
extension StarlingServer {
    /// The users file's authenticator; nil when any login is accepted. Refuses to start open on a non-loopback address
    /// (issue 9: secure by default without spoiling the first run).
    static func makeAuthenticator(_ configuration: ServerConfiguration) throws -> ServerAuthenticator? {
        guard let auth = configuration.auth else {
            let hosts = [configuration.host] + (configuration.tls?.host.map { [$0] } ?? [])
            if let exposed = hosts.first(where: { !ServerConfiguration.isLoopback($0) }) {
                throw StartError(
                    description: "auth: listening on \(exposed) (not loopback) needs an [auth] table in the config file: "
                        + "users-file = \"users.txt\" (made with 'starling passwd'), or anonymous = true to accept any login"
                )
            }
            return nil
        }
        do {
            var users: UsersFileAuthenticator?
            if let file = auth.usersFile { users = try UsersFileAuthenticator(file: file, allowsAnonymous: auth.anonymous) }
            var tokens: JWTVerifier?
            if auth.jwtSecret != nil || auth.jwtPublicKeyFile != nil {
                var settings = JWTVerifier.Settings()
                settings.secret = auth.jwtSecret.map { Array($0.utf8) }
                if let file = auth.jwtPublicKeyFile {
                    guard let pem = try? String(contentsOfFile: file, encoding: .utf8) else {
                        throw ServerConfiguration.SettingError("auth: cannot read jwt-public-key-file '\(file)'")
                    }
                    settings.publicKeyPEM = pem
                }
                settings.audience = auth.jwtAudience
                settings.issuer = auth.jwtIssuer
                settings.userClaim = auth.jwtUserClaim
                settings.rolesClaim = auth.jwtRolesClaim
                settings.leewaySeconds = Double(auth.jwtLeewaySeconds)
                tokens = try JWTVerifier(settings)
            }
            guard users != nil || tokens != nil else { return nil }
            return ServerAuthenticator(users: users, tokens: tokens, allowsAnonymous: auth.anonymous)
        } catch let error as ServerConfiguration.SettingError {
            throw StartError(description: error.description)
        }
    }

    /// What `starling check-config` checks beyond parsing: the files the start would read (users file, JWT key, TLS
    /// certificate and key) and the rule that an open server stays on loopback; nothing is bound or opened for
    /// writing. Returns a summary of what the configuration turns on.
    public static func check(_ configuration: ServerConfiguration) throws -> [String] {
        var summary = ["listeners: http \(configuration.host):\(configuration.port)"
            + (configuration.stompPort.map { ", stomp \(configuration.host):\($0)" } ?? "")]
        let authenticator = try Self.makeAuthenticator(configuration)
        summary.append(authenticator == nil ? "auth: any login (loopback only)" : "auth: checked")
        if let tls = configuration.tls {
            do throws(TLSContextHolder.LoadError) {
                _ = try TLSContextHolder.prepare(tls)
            } catch {
                throw StartError(description: error.description)
            }
            let host = tls.host ?? configuration.host
            summary.append("tls: https \(tls.port.map { "\(host):\($0)" } ?? "off"), stomps \(tls.stompPort.map { "\(host):\($0)" } ?? "off")")
        }
        summary.append("access rules: \(configuration.accessRules.count)")
        summary.append("policies: \(configuration.queuePolicyRules.count) queue, \(configuration.historyPolicyRules.count) topic and room")
        summary.append("admin API: \(configuration.adminToken == nil ? "off" : "on")")
        summary.append("storage: \(configuration.storage.rawValue) in \(configuration.dataDirectory), fsync \(configuration.fsync.rawValue)")
        return summary
    }

    /// What every connection starts from, with its access rules and login check.
    static func connectionTemplate(
        _ configuration: ServerConfiguration, authenticator: ServerAuthenticator?, pool: NIOThreadPool?
    ) -> STOMPConnection.SharedSettings {
        var template = Self.connectionTemplate(configuration)
        if !configuration.accessRules.isEmpty { template.access = AccessControl(rules: configuration.accessRules) }
        if let authenticator, let pool {
            let auth = configuration.auth ?? ServerConfiguration.Auth()
            let limiter = FailedLoginLimiter(limit: auth.failedLoginLimit, windowSeconds: Double(auth.failedLoginWindowSeconds))
            template.authentication = .init(authenticator: authenticator, pool: pool, limiter: limiter)
        }
        return .init(template)
    }

    /// What every connection starts from (all but its session id and transport), built once.
    private static func connectionTemplate(_ configuration: ServerConfiguration) -> STOMPConnection.Settings {
        var session = SessionStateMachine.Configuration()
        session.heartbeat = .init(
            send: configuration.heartbeat.sendMilliseconds,
            receive: configuration.heartbeat.receiveMilliseconds
        )
        let limits = configuration.limits
        session.maxSubscriptions = limits.maxSubscriptionsPerConnection
        session.maxPresenceMetaBytes = limits.maxPresenceMetaBytes
        session.announcedLimits = [
            ("x-max-body-size", String(limits.maxBodySize)),
            ("x-max-header-count", String(limits.maxHeaderCount)),
            ("x-max-header-length", String(limits.maxHeaderLineLength)),
            ("x-max-subscriptions", String(limits.maxSubscriptionsPerConnection)),
            ("x-max-frame-rate", String(limits.maxFrameRate)),
            ("x-max-pending-bytes", String(limits.maxPendingBytes)),
            ("x-max-presence-meta-bytes", String(limits.maxPresenceMetaBytes)),
        ]
        var settings = STOMPConnection.Settings(parserLimits: configuration.parserLimits, session: .init(session))
        settings.heartbeatGraceFactor = configuration.heartbeat.graceFactor
        settings.maxPendingBytes = configuration.limits.maxPendingBytes
        settings.maxFrameRate = Double(configuration.limits.maxFrameRate)
        settings.connectTimeout = .milliseconds(Int64(configuration.heartbeat.connectTimeoutMilliseconds))
        return settings
    }
}
