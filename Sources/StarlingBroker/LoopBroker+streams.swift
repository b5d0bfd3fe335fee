import NIOCore

/// Room, presence and last-value subscriptions on the subscriber's loop: their stream cursors (`StreamCursor`) hold
/// live messages until the snapshot from the stream's loop (or every loop's, for last values) is written, then pass
/// only what is past it.
extension LoopBroker {
    /// `write` for a room or presence subscription: held until its snapshot is written, then only what is past it.
    func writeStream(_ messages: ArraySlice<BrokerMessage>, to subscription: TopicSubscription, cursor: StreamCursor) {
        if cursor.held != nil {
            cursor.held!.append(contentsOf: messages)
            return
        }
        if cursor.perStream != nil {
            self.writeLastValueStream(messages, to: subscription, cursor: cursor)
            return
        }
        // A stream's messages come in offset order (one owning loop publishes them).
        var fresh = messages
        while let first = fresh.first, first.offset <= cursor.delivered { fresh = fresh.dropFirst() }
        guard let last = fresh.last else { return }
        cursor.delivered = last.offset
        if cursor.markNotRecovered {
            cursor.markNotRecovered = false
            subscription.sink.deliver(fresh.prefix(1), to: subscription, marks: StreamCursor.notRecoveredMark)
            fresh = fresh.dropFirst()
        }
        if !fresh.isEmpty { subscription.sink.deliver(fresh, to: subscription) }
        self.markDirty(subscription.sink)
    }

    /// `writeStream` in last-value mode: per destination, only what is past the snapshot (messages without an offset,
    /// of topics that keep no last value, always pass).
    func writeLastValueStream(_ messages: ArraySlice<BrokerMessage>, to subscription: TopicSubscription, cursor: StreamCursor) {
        var fresh: [BrokerMessage] = []
        for message in messages {
            if message.offset > 0 {
                guard message.offset > cursor.perStream![message.destination, default: 0] else { continue }
                cursor.perStream![message.destination] = message.offset
            }
            fresh.append(message)
        }
        guard !fresh.isEmpty else { return }
        subscription.sink.deliver(fresh[...], to: subscription)
        self.markDirty(subscription.sink)
    }

    /// One loop's last values for a last-value subscription: written at once (marked `x-snapshot:true`); once every
    /// loop answered, what was held meanwhile follows, then the SUBSCRIBE's receipt.
    func deliverLastValues(_ part: LastValueSnapshot) {
        let subscription = part.subscription
        guard let cursor = subscription.cursor, cursor.isActive, cursor.held != nil else {
            // Unsubscribed meanwhile: nothing to write, but the SUBSCRIBE's receipt is still owed (once).
            subscription.cursor?.awaitedSnapshots -= 1
            if subscription.cursor?.awaitedSnapshots == 0, let receipt = part.receipt { subscription.sink.sendReceipt(receipt, headers: []) }
            return
        }
        for (destination, head) in part.heads { cursor.perStream![destination] = head }
        if !part.messages.isEmpty {
            subscription.sink.deliver(part.messages[...], to: subscription, marks: StreamCursor.snapshotMark)
            self.markDirty(subscription.sink)
        }
        cursor.awaitedSnapshots -= 1
        if cursor.awaitedSnapshots == 0 {
            let held = cursor.held!
            cursor.held = nil
            if !held.isEmpty { self.writeLastValueStream(held[...], to: subscription, cursor: cursor) }
            if let receipt = part.receipt { subscription.sink.sendReceipt(receipt, headers: []) }
        }
        self.flushDirty()
    }

    /// The snapshot of a room or presence subscription arrived from the room's loop: writes it, then what was held
    /// meanwhile, then answers the SUBSCRIBE's receipt.
    func deliverSnapshot(_ snapshot: StreamSnapshot) {
        let subscription = snapshot.subscription
        guard let cursor = subscription.cursor, cursor.isActive, let held = cursor.held else {
            // Unsubscribed meanwhile: nothing to write, but the SUBSCRIBE's receipt is still owed.
            if let receipt = snapshot.receipt { subscription.sink.sendReceipt(receipt, headers: snapshot.receiptHeaders) }
            return
        }
        cursor.held = nil
        cursor.delivered = snapshot.head
        var messages = snapshot.messages[...]
        if snapshot.notRecovered {
            if messages.isEmpty {
                cursor.markNotRecovered = true
            } else {
                let marks = snapshot.isHistory ? StreamCursor.historyNotRecoveredMark : StreamCursor.notRecoveredMark
                subscription.sink.deliver(messages.prefix(1), to: subscription, marks: marks)
                messages = messages.dropFirst()
            }
        }
        if !messages.isEmpty {
            if snapshot.isHistory {
                subscription.sink.deliver(messages, to: subscription, marks: StreamCursor.historyMark)
            } else {
                subscription.sink.deliver(messages, to: subscription)
            }
        }
        self.markDirty(subscription.sink)
        if !held.isEmpty { self.writeStream(held[...], to: subscription, cursor: cursor) }
        if let receipt = snapshot.receipt { subscription.sink.sendReceipt(receipt, headers: snapshot.receiptHeaders) }
        self.flushDirty()
    }
}
