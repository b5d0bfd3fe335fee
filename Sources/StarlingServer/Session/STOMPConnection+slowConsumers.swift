import NIOCore
import StarlingBroker
import StarlingSTOMP

/// Slow clients and rate caps (issue 8, docs/slow-consumers.md). While the socket is full (`backlog` set), topic
/// deliveries wait in an `OutboundBacklog` per their destinations' `slow-consumer` policies and go out as it drains;
/// paced subscriptions (`x-max-rate`, a policy's `max-rate`) pass their messages through a `RateLimiter`. Neither
/// touches the fast path of `deliver(_:to:)` beyond one check.
extension STOMPConnection {
    /// Gives `subscription` a rate limiter when it asked for `x-max-rate` or some policy caps rates.
    func pace(_ subscription: TopicSubscription, maxRate: Double) {
        guard maxRate > 0 || self.loop.hasRateCaps else { return }
        subscription.limiter = RateLimiter(subscriberRate: maxRate)
    }

    /// `deliver(_:to:)` when the client is slow or the subscription paced.
    func deliverPaced(_ messages: ArraySlice<BrokerMessage>, to subscription: TopicSubscription) {
        var now: UInt64 = 0
        for message in messages {
            if let limiter = subscription.limiter {
                let interval = limiter.interval(for: message)
                if interval > 0 {
                    if now == 0 { now = NIODeadline.now().uptimeNanoseconds }
                    guard limiter.admit(message, interval: interval, now: now) else {
                        self.armPacing(subscription, limiter, now: now)
                        continue
                    }
                }
            }
            self.writeOrHold(message, to: subscription)
        }
        self.checkBacklogBudget()
    }

    /// A live delivery: written, or while the client is slow held per its destination's policy.
    private func writeOrHold(_ message: BrokerMessage, to subscription: TopicSubscription) {
        if let backlog = self.backlog {
            backlog.hold(message, for: subscription, policy: message.delivery)
        } else {
            self.write(message, to: subscription, marks: nil)
        }
    }

    /// Writes one MESSAGE: the subscription's head, `marks`, an `ack` header for client ack modes, the shared part.
    func write(_ message: BrokerMessage, to subscription: TopicSubscription, marks: ByteBuffer?) {
        guard let transport = self.transport else { return }
        let version = self.version
        var head = subscription.head
        if let marks { head.writeImmutableBuffer(marks) }
        if subscription.ackMode != .auto {
            STOMPFrameEncoder.writeHeader("ack", message.messageID, to: &head, version: version)
        }
        transport.write(head: head, body: message.shared(for: version), isText: message.isUTF8)
        self.wroteSinceTick = true
        if subscription.cursor != nil { self.metrics.streamDeliveries &+= 1 } else { self.metrics.topicDeliveries &+= 1 }
    }

    /// Past `max-pending-bytes` held: the client is not reading. DESIGN.md: ERROR, then close.
    func checkBacklogBudget() {
        guard let backlog = self.backlog, backlog.bytes > self.settings.maxPendingBytes, !self.closed,
              let transport = self.transport
        else { return }
        self.logger.info("slow consumer disconnected", metadata: self.logMetadata)
        self.retireBacklog()
        self.countError("slow consumer")
        var headers: STOMPHeaders = [:]
        headers.add("message", "slow consumer: outbound buffer limit exceeded")
        let bytes = STOMPFrameEncoder.encode(STOMPFrame(.error, headers: headers), version: self.version)
        transport.write(head: nil, body: bytes, isText: true)
        self.close(.slowConsumer)
    }

    /// The socket drained below its low-water mark: writes what was held, in chunks, while it takes them.
    func transportWritable() {
        guard let backlog = self.backlog, !self.closed, let transport = self.transport else { return }
        var chunk = 0
        while transport.isWritable, let item = backlog.next() {
            switch item {
            case .message(let message, let subscription, let marks):
                self.write(message, to: subscription, marks: marks)
                chunk += message.sharedSize
            case .frame(let head, let body, let isText):
                transport.write(head: head, body: body, isText: isText)
                chunk += body.readableBytes
            }
            if chunk >= Self.drainChunk {
                // The transports batch small frames until a flush: flushing per chunk lets the socket say when it
                // is full again.
                transport.flush()
                chunk = 0
            }
        }
        if backlog.isEmpty { self.retireBacklog() }
        self.wroteSinceTick = true
        transport.flush()
        if transport.isWritable { self.settleAutoDeliveries() }
    }

    /// Bytes written between flushes while draining a backlog.
    static var drainChunk: Int { 32 * 1024 }

    /// Makes sure a timer fires when the earliest message `limiter` holds is due.
    private func armPacing(_ subscription: TopicSubscription, _ limiter: RateLimiter, now: UInt64) {
        guard let due = limiter.nextDue else { return }
        if let set = limiter.timerDue, set <= due { return }
        limiter.timerDue = due
        self.loop.eventLoop.assumeIsolated().scheduleTask(in: .nanoseconds(Int64(due &- min(due, now)))) {
            self.pacingDue(subscription, limiter, deadline: due)
        }
    }

    /// A paced subscription's timer: writes (or, while the client is slow, holds) what is due, then re-arms.
    private func pacingDue(_ subscription: TopicSubscription, _ limiter: RateLimiter, deadline: UInt64) {
        if limiter.timerDue == deadline { limiter.timerDue = nil }
        guard !self.closed, self.subscriptions[subscription.id] === subscription else { return }
        let now = NIODeadline.now().uptimeNanoseconds
        let due = limiter.takeDue(now: now)
        if !due.isEmpty {
            for message in due { self.writeOrHold(message, to: subscription) }
            self.checkBacklogBudget()
            self.loop.scheduleFlush(self)
        }
        self.armPacing(subscription, limiter, now: now)
    }
}

extension STOMPConnection {
    /// Drops the backlog, counting what its policies skipped.
    func retireBacklog() {
        guard let backlog = self.backlog else { return }
        self.metrics.conflated &+= backlog.conflatedCount
        self.metrics.dropped &+= backlog.droppedCount
        self.backlog = nil
    }

    /// Counts an ERROR by its reason (and the limit, if one was hit).
    func countError(_ message: String) {
        // The admin API's own sessions answer HTTP requests: their ERRORs reach no client.
        guard self.kind != .internal else { return }
        let (reason, limit) = ErrorReason.classify(message)
        self.metrics.server.error(reason)
        if let limit { self.metrics.server.limitHit(limit) }
        if reason == .auth { self.metrics.server.authFailed() }
    }
}
