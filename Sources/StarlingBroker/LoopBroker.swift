import NIOCore
import StarlingSTOMP

/// The broker state of one event loop: its subscription index and its sessions.
///
/// Threading rule: every method runs on `eventLoop` (asserted in debug builds). A publish is queued in the
/// publishing loop's outbox; once per loop tick the outbox is sent, one hop per interested loop carrying the
/// whole batch, and each receiving loop writes to its subscribers and then flushes each connection once.
public final class LoopBroker: @unchecked Sendable {
    public let index: Int
    public let eventLoop: any EventLoop
    unowned var broker: Broker!

    private var trie = SubscriptionTrie<TopicSubscription>()
    private var patternCounts: [String: Int] = [:]
    private var matchCache: [String: [TopicSubscription]] = [:]
    private var interestCache: [String: UInt64] = [:]
    private var interestCacheGeneration: UInt64 = .max
    private var deliveryPolicyCache: [String: DeliveryPolicy] = [:]
    /// Set by a configuration reload; until then the broker's.
    private var reloadedDeliveryPolicies: DeliveryPolicies?
    private var outbox: [[BrokerMessage]]
    private var outboxScheduled = false
    private var flushScheduled = false
    private var dirty: [MessageSink] = []
    private var flushing: [MessageSink] = []
    private var connections: [ObjectIdentifier: any ServerConnection] = [:]
    private var scratch: [TopicSubscription] = []
    /// Scratch of `deliver` (kept between batches so a batch allocates nothing): the subscribers a batch touches,
    /// their lists of runs, and the messages of one subscriber gathered from several runs.
    private var deliveryStamp: UInt64 = 0
    private var touched: [TopicSubscription] = []
    private var runLinks: [RunLink] = []
    private var runHeads: [Int] = []
    private var runTails: [Int] = []
    private var gathered: [BrokerMessage] = []
    /// The queues this loop owns, and queue traffic to and from other loops.
    private(set) var queueHost: QueueHost!
    /// The rooms this loop owns.
    private(set) var roomHost: RoomHost!
    /// Gets each delivered batch's latency; nil = not measured (no clock read).
    public var latencyRecorder: (any DeliveryLatencyRecorder)?

    /// Caches are dropped when they grow past this many destinations (bounded memory under many topics).
    static let cacheLimit = 8192

    init(
        index: Int, eventLoop: any EventLoop, loopCount: Int, queuePolicies: QueuePolicies, historyPolicies: HistoryPolicies,
        roomLimits: RoomLimits, store: MessageStore?
    ) {
        self.index = index
        self.eventLoop = eventLoop
        self.outbox = Array(repeating: [], count: loopCount)
        self.queueHost = QueueHost(loop: self, loopCount: loopCount, policies: queuePolicies, store: store)
        self.roomHost = RoomHost(loop: self, policies: historyPolicies, limits: roomLimits)
    }

    // MARK: connections

    /// Tracks a connection on this loop until `unregister`, so shutdown can reach it.
    public func register(_ connection: any ServerConnection) {
        self.eventLoop.preconditionInEventLoop()
        self.connections[ObjectIdentifier(connection)] = connection
    }

    public func unregister(_ connection: any ServerConnection) {
        self.connections[ObjectIdentifier(connection)] = nil
    }

    public var connectionCount: Int { self.connections.count }

    /// The connections on this loop (for the admin API).
    public var registeredConnections: [any ServerConnection] { Array(self.connections.values) }

    /// Ends every connection of this loop, in equal batches spread evenly over `window` (at least 50 ms apart);
    /// those still open keep being served until their turn.
    func shutdownConnections(spreadOver window: TimeAmount) {
        let connections = Array(self.connections.values)
        guard !connections.isEmpty else { return }
        let batches = max(1, min(connections.count, Int(window.nanoseconds / TimeAmount.milliseconds(50).nanoseconds)))
        let perBatch = (connections.count + batches - 1) / batches
        let interval = TimeAmount.nanoseconds(window.nanoseconds / Int64(batches))
        for (batch, start) in stride(from: 0, to: connections.count, by: perBatch).enumerated() {
            let part = connections[start..<min(start + perBatch, connections.count)]
            if batch == 0 {
                for connection in part { connection.serverIsShuttingDown() }
            } else {
                self.eventLoop.assumeIsolated().scheduleTask(in: interval * Int64(batch)) {
                    for connection in part { connection.serverIsShuttingDown() }
                }
            }
        }
    }

    // MARK: subscriptions

    public var subscriptionCount: Int { self.trie.count }

    public func subscribe(_ subscription: TopicSubscription) {
        self.eventLoop.assertInEventLoop()
        self.trie.insert(subscription.words, subscription)
        self.matchCache.removeAll(keepingCapacity: true)
        let count = self.patternCounts[subscription.destination, default: 0] + 1
        self.patternCounts[subscription.destination] = count
        if count == 1 {
            self.broker.interest.add(pattern: subscription.destination, words: subscription.words, loop: self.index)
        }
    }

    public func unsubscribe(_ subscription: TopicSubscription) {
        self.eventLoop.assertInEventLoop()
        guard self.trie.remove(subscription.words, subscription) else { return }
        self.matchCache.removeAll(keepingCapacity: true)
        let count = self.patternCounts[subscription.destination, default: 1] - 1
        if count == 0 {
            self.patternCounts[subscription.destination] = nil
            self.broker.interest.remove(pattern: subscription.destination, words: subscription.words, loop: self.index)
        } else {
            self.patternCounts[subscription.destination] = count
        }
    }

    // MARK: publishing

    /// Queues `message` (to a destination whose words are `words`) for every loop with matching subscribers.
    public func publish(_ message: BrokerMessage, words: [Substring]) {
        self.eventLoop.assertInEventLoop()
        var mask = self.interestedLoops(message.route, words)
        guard mask != 0 else { return }
        while mask != 0 {
            let loop = mask.trailingZeroBitCount
            mask &= mask - 1
            self.outbox[loop].append(message)
        }
        if !self.outboxScheduled {
            self.outboxScheduled = true
            self.eventLoop.execute { self.sendOutbox() }
        }
    }

    private func interestedLoops(_ destination: String, _ words: [Substring]) -> UInt64 {
        let generation = self.broker.interest.generation
        if generation == self.interestCacheGeneration, let mask = self.interestCache[destination] {
            return mask
        }
        if generation != self.interestCacheGeneration || self.interestCache.count >= Self.cacheLimit {
            self.interestCache.removeAll(keepingCapacity: true)
        }
        let (mask, validFor) = self.broker.interest.loops(matching: words)
        self.interestCacheGeneration = validFor
        self.interestCache[destination] = mask
        return mask
    }

    private func sendOutbox() {
        self.outboxScheduled = false
        for loop in self.outbox.indices where !self.outbox[loop].isEmpty {
            // Taken, not copied: `removeAll(keepingCapacity:)` on an array still shared with the batch would
            // allocate a new buffer of the full capacity every tick.
            var batch: [BrokerMessage] = []
            swap(&batch, &self.outbox[loop])
            if loop == self.index {
                self.deliver(batch)
                // Delivered synchronously: the buffer is unique again and serves the next tick.
                batch.removeAll(keepingCapacity: true)
                if self.outbox[loop].isEmpty { swap(&batch, &self.outbox[loop]) }
            } else {
                let target = self.broker.loops[loop]
                let handedOver = batch
                target.eventLoop.execute { target.deliver(handedOver) }
            }
        }
    }

    /// Writes each message to every local subscriber, then flushes each connection that got something once.
    ///
    /// Subscriber-major over the whole batch: each subscriber (and its connection, transport and buffers, which
    /// are cold in cache with thousands of subscribers) is visited once per batch, not once per message. A
    /// first pass links, per subscriber, the runs of consecutive messages to one destination that it matches, in
    /// batch order; the second pass writes each subscriber's messages in that order. So every subscriber still
    /// sees the batch in publish order, also across destinations (a wildcard subscription matching several).
    func deliver(_ batch: [BrokerMessage]) {
        let first = batch.first?.route
        if let first, batch.allSatisfy({ $0.route == first }) {
            // One destination (the common case of one hot topic): no bookkeeping needed.
            for subscription in self.localSubscribers(first) {
                self.write(batch[...], to: subscription)
            }
        } else {
            self.linkRuns(of: batch)
            for (slot, subscription) in self.touched.enumerated() {
                var link = self.runHeads[slot]
                if self.runLinks[link].next < 0 {
                    self.write(batch[self.runLinks[link].range], to: subscription)
                    continue
                }
                self.gathered.removeAll(keepingCapacity: true)
                while link >= 0 {
                    self.gathered.append(contentsOf: batch[self.runLinks[link].range])
                    link = self.runLinks[link].next
                }
                self.write(self.gathered[...], to: subscription)
            }
            self.touched.removeAll(keepingCapacity: true)
            self.gathered.removeAll(keepingCapacity: true)
        }
        self.flushDirty()
        if let recorder = self.latencyRecorder, let oldest = batch.first {
            recorder.recordDeliveryLatency(nanoseconds: NIODeadline.now().uptimeNanoseconds &- oldest.publishedAt)
        }
    }

    /// First pass of `deliver`: `touched` gets each matching subscriber once, in order of first match, and
    /// `runHeads[slot]` the start of its list of runs in `runLinks`.
    private func linkRuns(of batch: [BrokerMessage]) {
        self.deliveryStamp &+= 1
        let stamp = self.deliveryStamp
        self.runLinks.removeAll(keepingCapacity: true)
        self.runHeads.removeAll(keepingCapacity: true)
        self.runTails.removeAll(keepingCapacity: true)
        var start = batch.startIndex
        while start < batch.endIndex {
            let destination = batch[start].route
            var end = start + 1
            while end < batch.endIndex, batch[end].route == destination { end += 1 }
            for subscription in self.localSubscribers(destination) {
                let link = self.runLinks.count
                self.runLinks.append(RunLink(range: start..<end, next: -1))
                if subscription.deliveryStamp != stamp {
                    subscription.deliveryStamp = stamp
                    subscription.deliverySlot = self.touched.count
                    self.touched.append(subscription)
                    self.runHeads.append(link)
                    self.runTails.append(link)
                } else {
                    let slot = subscription.deliverySlot
                    self.runLinks[self.runTails[slot]].next = link
                    self.runTails[slot] = link
                }
            }
            start = end
        }
    }

    /// Writes `messages` to one subscriber and marks its connection for the flush at the end of the batch.
    private func write(_ messages: ArraySlice<BrokerMessage>, to subscription: TopicSubscription) {
        if let cursor = subscription.cursor {
            self.writeStream(messages, to: subscription, cursor: cursor)
            return
        }
        subscription.sink.deliver(messages, to: subscription)
        self.markDirty(subscription.sink)
    }

    /// Marks `sink` as having unflushed writes, flushed by the next `flushDirty`.
    func markDirty(_ sink: MessageSink) {
        if !sink.needsFlush {
            sink.needsFlush = true
            self.dirty.append(sink)
        }
    }

    /// Marks `sink` as having unflushed writes (replies, heart-beats) and flushes it at the end of this loop tick,
    /// together with everything else written in the tick.
    public func scheduleFlush(_ sink: MessageSink) {
        self.markDirty(sink)
        if !self.flushScheduled {
            self.flushScheduled = true
            self.eventLoop.execute {
                self.flushScheduled = false
                self.flushDirty()
            }
        }
    }

    /// Flushes every sink marked dirty.
    func flushDirty() {
        guard !self.dirty.isEmpty else { return }
        // The sinks are swapped out with the spare, so both buffers keep their capacity. A flush may mark sinks
        // dirty again, or even flush them (re-entry): the spare is taken meanwhile, so that finds an empty one.
        var sinks: [MessageSink] = []
        swap(&sinks, &self.flushing)
        swap(&sinks, &self.dirty)
        for sink in sinks {
            sink.needsFlush = false
            sink.flushDeliveries()
        }
        sinks.removeAll(keepingCapacity: true)
        self.flushing = sinks
    }

    /// The delivery policy of topic `destination` (first matching `[[policy]]`), cached per destination.
    public func deliveryPolicy(for destination: String) -> DeliveryPolicy {
        let policies = self.reloadedDeliveryPolicies ?? self.broker.deliveryPolicies
        if policies.isTrivial { return .standard }
        if let cached = self.deliveryPolicyCache[destination] { return cached }
        if self.deliveryPolicyCache.count >= Self.cacheLimit { self.deliveryPolicyCache.removeAll(keepingCapacity: true) }
        let policy = policies.policy(for: destination)
        self.deliveryPolicyCache[destination] = policy
        return policy
    }

    /// Some policy caps rates: every topic subscription gets a `RateLimiter`.
    public var hasRateCaps: Bool { (self.reloadedDeliveryPolicies ?? self.broker.deliveryPolicies).hasRateCaps }

    /// A configuration reload: the policies of topics, rooms and queues from now on (queues and rooms that exist
    /// take theirs too; messages already published keep the delivery policy they were stamped with).
    func updatePolicies(queue: QueuePolicies, history: HistoryPolicies, delivery: DeliveryPolicies) {
        self.reloadedDeliveryPolicies = delivery
        self.deliveryPolicyCache.removeAll()
        self.queueHost.update(queue)
        self.roomHost.update(history)
    }

    /// Recent idempotency keys, shared by every loop.
    public var idempotency: IdempotencyTable { self.broker.idempotency }

    // MARK: queues

    /// Sends `enqueue` to the loop owning its queue; the outcome comes back through `enqueueFinished` when
    /// `enqueue.reply` asks for it.
    public func enqueue(_ enqueue: QueueEnqueue) {
        self.eventLoop.assertInEventLoop()
        self.queueHost.postToOwner(.enqueue(enqueue), destination: enqueue.destination)
    }

    /// Adds a consumer to the queue `destination`; deliveries come through `sink.deliver(_:to:)` on this loop.
    public func subscribeQueue(
        id: String, destination: String, ackMode: AckMode, prefetch: Int?, version: STOMPVersion, sink: MessageSink
    ) -> QueueSubscription {
        self.eventLoop.assertInEventLoop()
        let subscription = QueueSubscription(
            id: id, destination: destination, ackMode: ackMode, prefetch: prefetch ?? self.queueHost.policies.policy(for: destination).defaultPrefetch,
            consumerID: self.queueHost.makeConsumerID(), loopIndex: self.index, version: version, sink: sink
        )
        self.queueHost.postToOwner(.addConsumer(subscription), destination: destination)
        return subscription
    }

    /// Removes the consumer; its unacknowledged messages go back to the queue (redelivered to others).
    public func unsubscribeQueue(_ subscription: QueueSubscription) {
        self.eventLoop.assertInEventLoop()
        guard subscription.isActive else { return }
        subscription.isActive = false
        self.queueHost.postToOwner(
            .removeConsumer(destination: subscription.destination, consumerID: subscription.consumerID),
            destination: subscription.destination
        )
    }

    /// ACK (or an `auto` delivery written): the queue forgets these deliveries. With `reply`, the outcome comes
    /// back through `enqueueFinished` once the removal is durable (an ACK's receipt).
    public func acknowledge(_ tags: [UInt64], queue destination: String, reply: QueueReply? = nil) {
        guard !tags.isEmpty || reply != nil else { return }
        self.queueHost.postToOwner(.acknowledge(destination: destination, tags: tags, reply: reply), destination: destination)
    }

    /// NACK: back to the queue (`requeue`) or to its dead-letter queue.
    public func reject(_ tags: [UInt64], queue destination: String, requeue: Bool) {
        guard !tags.isEmpty else { return }
        self.queueHost.postToOwner(.reject(destination: destination, tags: tags, requeue: requeue), destination: destination)
    }

    /// Starts (or keeps) the durable subscription whose messages collect in `queue`; consume them by subscribing to
    /// `queue` with `subscribeQueue`.
    public func bindDurable(queue: String, pattern: String, words: [Substring]) {
        self.queueHost.postToOwner(.bindDurable(queue: queue, pattern: pattern, words: words), destination: queue)
    }

    /// Ends a durable subscription: its binding and queue are deleted.
    public func unbindDurable(queue: String) {
        self.queueHost.postToOwner(.unbindDurable(queue: queue), destination: queue)
    }

    /// Ready, unacknowledged and consumer counts of a queue this loop owns (nil when it does not hold it).
    public func queueStats(_ destination: String) -> (ready: Int, unacked: Int, consumers: Int)? {
        self.queueHost.queueStats(destination)
    }

    /// Every queue this loop owns, with its counts.
    public func allQueueStats() -> [QueueStatistics] {
        self.queueHost.allQueueStats()
    }

    /// Destinations and patterns with at least one subscriber on this loop, with their subscribers on it.
    public var subscribedPatternCounts: [String: Int] { self.patternCounts }

    /// The rooms and topics with history this loop owns.
    public func roomSummaries() -> [RoomSummary] {
        self.roomHost.summaries()
    }

    /// The members of room `stream` if this loop owns it.
    public func roomMembers(_ stream: String) -> [RoomMember]? {
        self.roomHost.members(of: stream)
    }

    /// The index of the loop that owns room (or topic with history) `stream`.
    public func roomOwner(_ stream: String) -> Int {
        self.roomHost.owner(of: stream)
    }

    /// Deletes the ready messages of queue `destination`, owned by this loop; nil when there is no such queue.
    public func purgeQueue(_ destination: String) -> Int? {
        self.queueHost.purge(destination)
    }

    /// Moves dead-letter queue `destination`'s ready messages back to their queues; nil when there is no such queue.
    public func redriveQueue(_ destination: String) -> Int? {
        self.queueHost.redrive(destination)
    }

    /// The index of the loop that owns queue `destination`.
    public func queueOwner(_ destination: String) -> Int {
        self.queueHost.owner(of: destination)
    }

    /// The subscription-index words of a published destination (a topic, or a user's `/user/<login>/<rest>`).
    static func routingWords(_ destination: String, subscribing: Bool = false) -> [Substring]? {
        if let (login, rest) = UserDestination.sendTarget(destination) { return UserDestination.words(login: login, rest: rest) }
        if let words = RoomName.routingWords(destination) { return words }
        return subscribing ? try? TopicName.patternWords(destination) : try? TopicName.publishWords(destination)
    }

    private func localSubscribers(_ destination: String) -> [TopicSubscription] {
        if let cached = self.matchCache[destination] { return cached }
        guard let words = Self.routingWords(destination) else { return [] }
        self.scratch.removeAll(keepingCapacity: true)
        self.trie.match(words, into: &self.scratch)
        if self.matchCache.count >= Self.cacheLimit { self.matchCache.removeAll(keepingCapacity: true) }
        self.matchCache[destination] = self.scratch
        return self.scratch
    }
}

/// A run of consecutive messages to one destination in a delivered batch, linked to the subscriber's next run.
private struct RunLink {
    var range: Range<Int>
    var next: Int
}
