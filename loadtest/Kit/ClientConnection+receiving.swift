import NIOCore
import StarlingSTOMP

/// One subscription of a connection, and what it has seen of each publisher's stream.
struct SubscriptionState {
    let destination: Int
    /// Publisher ids `publisherBase ..< publisherBase + trackers.count` send to this destination.
    let publisherBase: Int
    var trackers: [SequenceTracker]
    let clientAck: Bool
}

extension ClientConnection {
    /// Subscribes to destination `destination` (subscription id = its index here) and completes on the RECEIPT.
    func subscribe(destination: Int, publisherBase: Int, publishers: Int, ackMode: AckMode) -> EventLoopFuture<Void> {
        let id = self.subscriptions.count
        self.subscriptions.append(SubscriptionState(
            destination: destination, publisherBase: publisherBase,
            trackers: Array(repeating: SequenceTracker(), count: publishers), clientAck: ackMode == .clientIndividual
        ))
        let frame = STOMPFrame(.subscribe, headers: [
            "id": String(id), "destination": self.stats.plan.destinations[destination], "ack": ackMode.rawValue,
        ])
        return self.sendWithReceipt(frame)
    }

    /// The hot path of every receiver: verify order and uniqueness, time it, ACK when asked.
    func handleMessage(_ message: ReceivedMessage) {
        let stats = self.stats
        if self.stalled {
            stats.stalledDelivered += 1
            return
        }
        let run = message.run
        let publisher = message.publisher
        let seq = message.seq
        let sentAt = message.sentAt
        let subscription = message.subscription
        guard subscription >= 0, subscription < self.subscriptions.count else {
            stats.tally.foreign += 1
            return
        }
        if self.subscriptions[subscription].clientAck, let ack = message.ack {
            self.writeAck(id: ack)
        }
        let index = publisher - self.subscriptions[subscription].publisherBase
        guard run, seq != .max, index >= 0, index < self.subscriptions[subscription].trackers.count else {
            stats.tally.foreign += 1
            return
        }
        stats.tally.delivered += 1
        let outcome = self.subscriptions[subscription].trackers[index].record(seq)
        if stats.plan.scenario == .queue {
            // Competing consumers: uniqueness is judged across all consumers (per loop here, across loops
            // at the end); this consumer's own tracker only judges order.
            let slot = publisher * stats.plan.destinations.count + self.subscriptions[subscription].destination
            if !stats.seen[slot].insert(seq) {
                stats.tally.duplicated += 1
            } else if outcome == .late {
                stats.tally.outOfOrder += 1
            }
        } else {
            switch outcome {
            case .duplicate: stats.tally.duplicated += 1
            case .late: stats.tally.outOfOrder += 1
            case .inOrder, .gap: break
            }
        }
        let now = self.now
        if sentAt >= stats.measureStart {
            stats.latency.record(microseconds: now > sentAt ? (now - sentAt) / 1000 : 0)
        }
        if now >= stats.measureStart && now < stats.measureEnd {
            stats.deliveredMeasured += 1
        }
    }

    /// `ACK` with `id` (the MESSAGE's `ack` value, unescaped), straight into bytes.
    func writeAck(id: ByteBuffer) {
        self.scratch.clear()
        Self.encodeAck(id: id, to: &self.scratch)
        self.writeWebSocketFrame(opcode: .text, payload: self.scratch, compress: true)
    }

    /// `ACK\nid:<id>\n\n\0` with `id` escaped per STOMP 1.2, as `STOMPFrameEncoder` writes it.
    static func encodeAck(id: ByteBuffer, to buffer: inout ByteBuffer) {
        buffer.writeStaticString("ACK\nid:")
        id.withUnsafeReadableBytes { bytes in
            for byte in bytes {
                switch byte {
                case UInt8(ascii: "\\"): buffer.writeStaticString("\\\\")
                case UInt8(ascii: ":"): buffer.writeStaticString("\\c")
                case UInt8(ascii: "\n"): buffer.writeStaticString("\\n")
                case UInt8(ascii: "\r"): buffer.writeStaticString("\\r")
                default: buffer.writeInteger(byte)
                }
            }
        }
        buffer.writeStaticString("\n\n\0")
    }
}
