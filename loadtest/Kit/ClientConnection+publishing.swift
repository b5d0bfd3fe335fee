import NIOCore

/// A publishing connection's state: which destinations it sends to, round-robin, each with its own sequence.
struct PublisherState {
    let id: Int
    let destinations: [Int]
    var nextDestination = 0
    /// Next sequence number per entry of `destinations` (= messages sent there so far).
    var sequences: [UInt64]
    /// Messages/s for this publisher; 0 = as fast as the flow window allows.
    let rate: Double
    /// When the paced schedule starts (a random phase within the first interval, so members of a room don't
    /// all send on the same tick).
    var startedAt: UInt64 = 0
    var sent: UInt64 = 0

    init(id: Int, destinations: [Int], rate: Double) {
        self.id = id
        self.destinations = destinations
        self.sequences = Array(repeating: 0, count: destinations.count)
        self.rate = rate
    }
}

extension ClientConnection {
    /// Messages per batch before yielding to the event loop (rate 0).
    static let pumpBatch = 64
    /// At most this many messages per tick for a paced publisher that fell behind.
    static let maxPerTick = 10_000

    /// Starts sending (called on the loop once the measured window is known).
    func startPublishing(at start: UInt64) {
        guard var publisher = self.publisher else { return }
        if publisher.rate > 0 {
            let interval = 1e9 / publisher.rate
            publisher.startedAt = start + UInt64(Double.random(in: 0..<min(interval, 1e9)))
            self.publisher = publisher
            self.stats.pacedPublishers.insert(self, due: publisher.startedAt)
        } else {
            self.schedulePump()
        }
    }

    func schedulePump() {
        guard !self.pumpScheduled, let bound = self.bound, let context = self.context else { return }
        self.pumpScheduled = true
        context.eventLoop.execute { bound.value.pump() }
    }

    /// Rate 0: a batch while the channel is writable and the flow window has room, then yield and repeat.
    /// A full socket resumes through `channelWritabilityChanged`; a full window retries shortly.
    /// Paced publishers (rate > 0) never pump: their timer retries a full socket within a millisecond (a
    /// writability change used to start the pump for them too, and they then sent as fast as the window allowed).
    func pump() {
        self.pumpScheduled = false
        guard self.stats.publishing, self.state == .open, let context = self.context, let publisher = self.publisher,
            publisher.rate == 0
        else { return }
        let now = MonotonicClock.nanoseconds()
        guard now < self.stats.measureEnd else { return }
        guard context.channel.isWritable else { return }
        let plan = self.stats.plan
        let room = plan.flow.limit - plan.flow.outstanding
        if room < plan.maxDeliveriesPerMessage {
            guard let bound = self.bound else { return }
            self.pumpScheduled = true
            context.eventLoop.scheduleTask(in: .microseconds(100)) { bound.value.pump() }
            return
        }
        for _ in 0..<min(Self.pumpBatch, room / plan.maxDeliveriesPerMessage) {
            self.appendNextSend(now: now)
        }
        self.finishBatch()
        self.schedulePump()
    }

    /// Paced: send what is due by now (called by the loop's 1 ms timer when this publisher is due). Returns when
    /// the next message is due, or nil when nothing could be sent now.
    func sendDue(now: UInt64) -> UInt64? {
        guard let publisher = self.publisher, self.state == .open, now >= publisher.startedAt,
            let context = self.context, context.channel.isWritable
        else { return nil }
        let due = UInt64(Double(now - publisher.startedAt) * publisher.rate / 1e9) + 1
        guard due > publisher.sent else { return self.nextDue() }
        let count = min(due - publisher.sent, UInt64(Self.maxPerTick))
        for _ in 0..<count {
            self.appendNextSend(now: now)
        }
        if due - self.publisher!.sent > UInt64(Self.maxPerTick) {
            // Too far behind: give up on the backlog rather than bursting it later.
            self.publisher!.sent = due
        }
        self.finishBatch()
        return self.nextDue()
    }

    /// When message number `sent + 1` of the paced schedule is due.
    private func nextDue() -> UInt64? {
        guard let publisher = self.publisher else { return nil }
        return publisher.startedAt + UInt64(Double(publisher.sent) * 1e9 / publisher.rate)
    }

    private func finishBatch() {
        self.flushOutbound()
        self.stats.plan.flow.expected[self.stats.index].store(self.stats.expectedDeliveries, ordering: .relaxed)
    }

    /// Encodes one SEND with the verification headers straight into bytes (no STOMPFrame, no Strings):
    /// `x-lt-run`, `x-lt-pub`, `x-lt-seq` (per publisher per destination) and `x-lt-ts` (monotonic ns).
    @inline(__always)
    func appendNextSend(now: UInt64) {
        let stats = self.stats
        let plan = stats.plan
        var publisher = self.publisher!
        let slot = publisher.nextDestination
        publisher.nextDestination = slot + 1 == publisher.destinations.count ? 0 : slot + 1
        let destination = publisher.destinations[slot]
        let seq = publisher.sequences[slot]
        publisher.sequences[slot] = seq + 1
        publisher.sent += 1
        self.publisher = publisher

        self.scratch.clear()
        self.scratch.writeStaticString("SEND\ndestination:")
        self.scratch.writeBytes(plan.destinationBytes[destination])
        self.scratch.writeStaticString("\nx-lt-run:")
        self.scratch.writeBytes(plan.runIDBytes)
        self.scratch.writeStaticString("\nx-lt-pub:")
        self.scratch.writeDecimal(UInt64(publisher.id))
        self.scratch.writeStaticString("\nx-lt-seq:")
        self.scratch.writeDecimal(seq)
        self.scratch.writeStaticString("\nx-lt-ts:")
        self.scratch.writeDecimal(now)
        if plan.persistent {
            // The RECEIPT is not waited for (deliveries drive the flow window); the broker still has to store
            // the message durably before it answers, which is the work being measured.
            self.scratch.writeStaticString("\npersistent:true\nreceipt:p")
            self.scratch.writeDecimal(seq)
        }
        self.scratch.writeStaticString("\ncontent-length:")
        self.scratch.writeDecimal(UInt64(plan.payload.count))
        self.scratch.writeStaticString("\n\n")
        self.scratch.writeBytes(plan.payload)
        self.scratch.writeInteger(UInt8(0))
        self.writeWebSocketFrame(opcode: .text, payload: self.scratch, compress: true)

        stats.sentTotal += 1
        stats.sentPerDestination[destination] += 1
        stats.expectedDeliveries += plan.deliveriesPerMessage[destination]
        if now >= stats.measureStart && now < stats.measureEnd {
            stats.sentMeasured += 1
        }
    }
}

extension ByteBuffer {
    /// Writes `value` in decimal ASCII without creating a String.
    @inline(__always)
    mutating func writeDecimal(_ value: UInt64) {
        var digits = 1
        var rest = value / 10
        while rest > 0 {
            digits += 1
            rest /= 10
        }
        self.writeWithUnsafeMutableBytes(minimumWritableBytes: digits) { pointer in
            var value = value
            var index = digits - 1
            while true {
                pointer[index] = UInt8(ascii: "0") + UInt8(value % 10)
                value /= 10
                if index == 0 { break }
                index -= 1
            }
            return digits
        }
    }
}
