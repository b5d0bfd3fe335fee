import NIOCore
import StarlingBroker
import StarlingSTOMP

/// How a connection ends: told by the server, closed, and cleaned up once its transport is gone.
extension STOMPConnection {
    /// The server drains: a TCP client gets ERROR `server shutting down` (a WebSocket gets close code 1001).
    func serverIsShuttingDown() {
        guard !self.closed, let transport = self.transport else { return }
        if !transport.hasCloseCodes {
            // A plain TCP client has no close code to read: tell it in STOMP.
            var headers: STOMPHeaders = [:]
            headers.add("message", "server shutting down")
            self.metrics.server.error(.shutdown)
            self.writeFrame(STOMPFrame(.error, headers: headers), inOrder: false)
        }
        self.close(.goingAway)
    }

    func close(_ reason: TransportCloseReason) {
        guard !self.closed else { return }
        self.closeReason = reason
        self.closed = true
        self.acceptingFrames = false
        self.transport?.close(reason)
    }

    /// The transport is gone (socket closed for any reason): drop every subscription and timer.
    func transportClosed() {
        if self.kind != .internal {
            var metadata = self.logMetadata
            metadata["reason"] = "\(self.closeReason.map(\.logName) ?? "closed by the client")"
            if let login = self.login { metadata["user"] = "\(login)" }
            self.logger.info("connection closed", metadata: metadata)
        }
        self.closed = true
        self.retireBacklog()
        self.metrics.connections[self.kind.rawValue] -= 1
        if self.sessionOpen {
            self.sessionOpen = false
            self.metrics.sessions -= 1
        }
        self.expiry?.cancel()
        self.expiry = nil
        self.clock.remove(self)
        for subscription in self.subscriptions.values {
            self.loop.unsubscribe(subscription)
            if subscription.cursor != nil { self.leaveRoom(subscription) }
        }
        self.subscriptions.removeAll()
        // Unacknowledged queue messages (and `auto` ones not yet settled) go back to their queues.
        for consumer in self.queue.consumers.values { self.loop.unsubscribeQueue(consumer.subscription) }
        self.queueBox = nil
        self.loop.unregister(self)
        self.transport = nil
    }
}
