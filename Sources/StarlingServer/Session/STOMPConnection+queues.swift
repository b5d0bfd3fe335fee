import NIOCore
import StarlingBroker
import StarlingSTOMP

/// The queue side of a session: consuming (`/queue/`, temporary queues, durable subscriptions), acknowledging, and
/// the answers queues send back (enqueue outcomes, receipts). See `QueueState` for the bookkeeping.
extension STOMPConnection {
    func enqueueFinished(token: UInt64, refusal: String?) {
        guard !self.closed else { return }
        let wait = self.queue.receiptWaits[token]
        if let refusal {
            self.queue.receiptWaits[token] = nil
            // The message did not get in: a retry with the same idempotency key must not be taken for a repeat.
            for (destination, key) in self.queue.idempotencyKeys.removeValue(forKey: token) ?? [] {
                self.loop.idempotency.forget(key: key, destination: destination)
            }
            self.fail(refusal, receiptID: wait?.receipt, detail: nil)
            return
        }
        guard var wait else { return }
        wait.remaining -= 1
        if wait.remaining == 0 {
            self.queue.receiptWaits[token] = nil
            self.queue.idempotencyKeys[token] = nil
            self.sendReceipt(wait.receipt)
        } else {
            self.queue.receiptWaits[token] = wait
        }
    }


    /// The queue of durable subscription `subscriptionID` of client `clientID` (lengths keep it unambiguous).
    static func durableQueue(clientID: String, subscriptionID: String) -> String {
        "\(QueueName.prefix)durable.\(clientID.utf8.count).\(clientID).\(subscriptionID)"
    }

    func subscribeQueue(id: String, destination: String, ackMode: AckMode, prefetch: Int?, durable: Bool = false) {
        let subscription = self.loop.subscribeQueue(
            id: id, destination: destination, ackMode: ackMode, prefetch: prefetch, version: self.version, sink: self
        )
        self.queue.consumers[id] = QueueState.Consumer(subscription: subscription, isDurable: durable)
    }

    /// `reply-to:/temp-queue/<name>`: rewritten to the queue's full name (any connection may SEND to it), and this
    /// connection consumes from it (subscription id `/temp-queue/<name>`) unless it already does.
    func rewriteReplyTo(_ headers: inout STOMPHeaders) {
        guard let replyTo = headers["reply-to"], replyTo.hasPrefix(TempQueueName.prefix),
            TempQueueName.problem(replyTo) == nil
        else { return }
        let queue = TempQueueName.queue(session: self.sessionID, name: replyTo.dropFirst(TempQueueName.prefix.count))
        headers.replaceOrAdd("reply-to", queue)
        if !self.queue.consumers.values.contains(where: { $0.subscription.destination == queue }),
            self.queue.consumers[replyTo] == nil
        {
            self.subscribeQueue(id: replyTo, destination: queue, ackMode: .auto, prefetch: nil)
        }
    }

    func unsubscribeQueue(id: String, endDurable: Bool = false) {
        guard let consumer = self.queue.consumers.removeValue(forKey: id) else { return }
        let subscription = consumer.subscription
        // What `auto` already wrote is settled first, so the queue does not hand it out again.
        if subscription.ackMode == .auto { self.settleAutoDeliveries() }
        for ackID in consumer.unacknowledged { self.queue.forget(ackID) }
        self.queue.forgetAll(of: subscription)
        self.loop.unsubscribeQueue(subscription)
        if consumer.isDurable && endDurable { self.loop.unbindDurable(queue: subscription.destination) }
    }

    func deliver(_ dispatch: QueueDispatch, to subscription: QueueSubscription) {
        guard !self.closed, let transport = self.transport, self.queue.consumers[subscription.id]?.subscription === subscription
        else {
            return
        }
        self.metrics.queueDeliveries &+= 1
        let version = self.version
        let message = dispatch.message.message
        var head = subscription.head
        if subscription.ackMode == .auto {
            self.queue.autoSettles[subscription.destination, default: []].append(dispatch.tag)
        } else {
            let ackID = self.queue.record(
                dispatch, subscription: subscription, messageID: version == .v1_2 ? nil : message.messageID
            )
            if subscription.ackMode == .client { self.queue.consumers[subscription.id]?.unacknowledged.append(ackID) }
            if version == .v1_2 { STOMPFrameEncoder.writeHeader("ack", ackID, to: &head, version: version) }
        }
        if dispatch.message.deliveryCount > 1 { head.writeString("redelivered:true\n") }
        head.writeString("x-delivery-count:")
        head.writeString(String(dispatch.message.deliveryCount))
        head.writeInteger(UInt8(ascii: "\n"))
        transport.write(head: head, body: message.shared(for: version), isText: message.isUTF8)
        self.wroteSinceTick = true
    }

    /// ACK or NACK. Returns false when it was refused (ERROR sent, connection closing). An ACK under a receipt
    /// adds to the receipt's wait (`token`) until the queue made the removal durable.
    func acknowledge(_ acknowledge: SessionStateMachine.Acknowledge, token: UInt64, receipt: String?) -> Bool {
        let ackID = self.version == .v1_2 ? acknowledge.id : self.queue.ackIDsByMessageID[acknowledge.id]
        guard let ackID, let pending = self.queue.pending[ackID] else {
            // Topic deliveries need no acknowledgement: accept ACK/NACK for them when a client-ack topic
            // subscription could have produced the id.
            if self.clientAckTopicSubscriptions > 0 { return true }
            let name = self.version == .v1_2 ? "ack id" : "message-id"
            self.fail(
                "\(acknowledge.positive ? "ACK" : "NACK") for unknown \(name) '\(acknowledge.id)': no unacknowledged message "
                    + "has it on this connection (already acknowledged, or never delivered here)",
                receiptID: receipt, detail: nil
            )
            return false
        }
        let subscription = pending.subscription
        var tags: [UInt64] = []
        if subscription.ackMode == .client, var consumer = self.queue.consumers[subscription.id] {
            // Cumulative: this delivery and every earlier one of the subscription.
            while let first = consumer.unacknowledged.first {
                consumer.unacknowledged.removeFirst()
                if let entry = self.queue.forget(first) { tags.append(entry.tag) }
                if first == ackID { break }
            }
            self.queue.consumers[subscription.id] = consumer
        } else if let entry = self.queue.forget(ackID) {
            tags.append(entry.tag)
        }
        if acknowledge.positive {
            var reply: QueueReply?
            if receipt != nil {
                self.queue.expectReply(token)
                reply = QueueReply(loopIndex: self.loop.index, sink: self, token: token, wantsSuccess: true)
            }
            self.loop.acknowledge(tags, queue: subscription.destination, reply: reply)
        } else {
            self.loop.reject(tags, queue: subscription.destination, requeue: acknowledge.requeue)
        }
        return true
    }

    /// Tells the queues that what `auto` subscriptions wrote is done with, freeing their consumers' credit. Held
    /// back while the socket is not writable, so a slow `auto` consumer stops getting messages instead of
    /// buffering them.
    func settleAutoDeliveries() {
        guard let box = self.queueBox, !box.state.autoSettles.isEmpty else { return }
        for (destination, tags) in self.queue.autoSettles { self.loop.acknowledge(tags, queue: destination) }
        self.queue.autoSettles.removeAll(keepingCapacity: true)
    }
}
