import NIOCore
import StarlingBroker

/// SIGHUP: a new configuration, applied without a restart and without dropping a connection.
extension StarlingServer {
    /// What a reload did: settings applied, and the keys whose change needs a restart (those keep their old values).
    public struct ReloadResult: Sendable {
        public var needsRestart: [String]
    }

    /// Applies `new`, all or nothing: everything is checked first (users file, JWT key, TLS files), then
    ///
    /// - `[[policy]]` tables, for topics, rooms and queues, existing ones included;
    /// - limits, heart-beats and the CONNECT timeout, `[auth]` and `[[acl]]`, for connections accepted from now on
    ///   (open sessions keep what they negotiated and were allowed);
    /// - `max-connections` and `max-connections-per-ip`, the `[admin]` token, and the `[tls]` certificate, key,
    ///   minimum version and client CA.
    ///
    /// Listeners, storage, event loops, WebSocket settings and logging need a restart: they are named in the result.
    public func reload(_ new: ServerConfiguration) async throws -> ReloadResult {
        let old = self.configuration
        var needsRestart = Self.restartOnlyChanges(from: old, to: new)
        // Checks first: a bad file changes nothing.
        let authenticator = try Self.makeAuthenticator(new)
        if (authenticator != nil) != (self.authPool != nil) {
            needsRestart.append("[auth] (turning login checks on or off)")
        }
        var preparedTLS: TLSContextHolder.Prepared?
        if let tls = new.tls {
            if self.tls == nil {
                needsRestart.append("[tls] (new listeners)")
            } else {
                do throws(TLSContextHolder.LoadError) {
                    preparedTLS = try TLSContextHolder.prepare(tls)
                } catch {
                    throw StartError(description: error.description)
                }
            }
        } else if self.tls != nil {
            needsRestart.append("[tls] (removing listeners)")
        }

        let template = Self.connectionTemplate(new, authenticator: self.authPool == nil ? nil : authenticator, pool: self.authPool)
        self.template.withLockedValue { $0 = template }
        self.connections.setLimits(maxTotal: new.limits.maxConnections, maxPerAddress: new.limits.maxConnectionsPerAddress)
        self.admin.setToken(new.adminToken)
        if let preparedTLS, let holder = self.tls {
            holder.install(preparedTLS)
            self.logger.info("tls reloaded", metadata: ["cert_file": "\(new.tls?.certificateFile ?? "")"])
        }
        try await self.broker.updatePolicies(
            queue: QueuePolicies(defaultPolicy: new.queues, rules: new.queuePolicyRules),
            history: HistoryPolicies(roomDefault: new.rooms, rules: new.historyPolicyRules),
            delivery: DeliveryPolicies(rules: new.deliveryPolicyRules)
        ).get()
        return ReloadResult(needsRestart: needsRestart)
    }

    /// Settings that are fixed once the server runs, by the key that names them, where `new` differs.
    static func restartOnlyChanges(from old: ServerConfiguration, to new: ServerConfiguration) -> [String] {
        var changed: [String] = []
        func compare<Value: Equatable>(_ key: String, _ value: (ServerConfiguration) -> Value) {
            if value(old) != value(new) { changed.append(key) }
        }
        compare("host") { $0.host }
        compare("port") { $0.port }
        compare("stomp-port") { $0.stompPort }
        compare("data-dir") { $0.dataDirectory }
        compare("storage") { $0.storage }
        compare("fsync") { $0.fsync }
        compare("fsync-interval-ms") { $0.fsyncIntervalMilliseconds }
        compare("event-loops") { $0.eventLoopCount }
        compare("web-root") { $0.webRoot }
        compare("echo-path") { $0.echoPath }
        compare("log-format") { $0.logFormat }
        compare("max-message-size") { $0.webSocket.maxMessageSize }
        compare("allowed-origins") { $0.webSocket.allowedOrigins }
        compare("deflate") { $0.webSocket.deflate }
        compare("deflate-window-bits") { $0.webSocket.deflateWindowBits }
        compare("deflate-memory-level") { $0.webSocket.deflateMemoryLevel }
        compare("deflate-context-takeover") { $0.webSocket.deflateContextTakeover }
        compare("deflate-client-context-takeover") { $0.webSocket.deflateClientContextTakeover }
        compare("idempotency-window-ms") { $0.idempotencyWindowMilliseconds }
        compare("idempotency-max-keys") { $0.idempotencyMaxKeys }
        compare("presence-max-meta-bytes") { $0.limits.maxPresenceMetaBytes }
        compare("drain-window-ms") { $0.drainWindow }
        compare("shutdown-timeout-ms") { $0.shutdownTimeout }
        compare("[tls] host, port, stomp-port") { [$0.tls?.host, $0.tls?.port.map(String.init), $0.tls?.stompPort.map(String.init)] }
        return changed
    }
}
