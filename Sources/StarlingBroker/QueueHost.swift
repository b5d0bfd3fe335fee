import NIOConcurrencyHelpers
import NIOCore
import StarlingSTOMP

/// The queues owned by one event loop, and the traffic between loops that queues need.
///
/// A queue belongs to one loop (its name's hash picks it); everything that changes it runs there. Other loops post
/// commands to it through their outboxes (one hop per loop pair per tick, in order), and it posts deliveries back
/// to the consumers' loops the same way.
final class QueueHost: @unchecked Sendable {
    unowned let loop: LoopBroker
    var queues: [String: MessageQueue] = [:]
    /// Consumers of this loop's queues, to post deliveries to.
    private var consumers: [UInt64: QueueSubscription] = [:]
    var dirtyQueues: Set<String> = []
    private var outbox: [[QueueCommand]]
    /// The size of the last batch sent to each loop: the next one starts with that capacity.
    private var outboxSizes: [Int]
    private var outboxScheduled = false
    private var nextConsumer: UInt64 = 0
    private var sweepTask: RepeatedTask?
    /// Durable subscriptions whose queue this loop owns, by queue.
    private var durableBindings: [String: TopicSubscription] = [:]
    /// Where persistent messages go (nil: everything in memory).
    let store: MessageStore?
    /// Store writes of this hop, submitted as one batch at its end, and who waits for them.
    var storeOperations: [StoreOperation] = []
    private var storeWaiters: [StoreWaiter] = []
    /// Outcomes of store batches, from the writer thread, waiting for this loop (see `storeCompleted`).
    private let completions = NIOLockedValueBox<[(waiters: [StoreWaiter], error: StoreError?)]>([])

    private enum StoreWaiter {
        /// A persistent message's producer (RECEIPT, or ERROR if the write failed).
        case enqueued(QueueReply, destination: String, storeID: UInt64)
        /// An ACK with a receipt.
        case acknowledged(QueueReply)
        /// A room SEND with a receipt: answered once the room's history holds it on disk.
        case kept(QueueReply)
    }
    var policies: QueuePolicies

    /// How often expired messages are swept out of queues nobody consumes from.
    static let sweepInterval = TimeAmount.seconds(1)

    init(loop: LoopBroker, loopCount: Int, policies: QueuePolicies, store: MessageStore?) {
        self.loop = loop
        self.outbox = Array(repeating: [], count: loopCount)
        self.outboxSizes = Array(repeating: 0, count: loopCount)
        self.policies = policies
        self.store = store
    }

    /// The policy of queue `destination` (the one it was created with, if it exists).
    func policy(for destination: String) -> QueuePolicy {
        self.queues[destination]?.policy ?? self.policies.policy(for: destination)
    }

    func makeConsumerID() -> UInt64 {
        self.nextConsumer += 1
        return UInt64(self.loop.index) << 48 | self.nextConsumer
    }

    /// The loop that owns `destination` (FNV-1a of its bytes: stable across runs and nodes).
    func owner(of destination: String) -> Int {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in destination.utf8 {
            hash ^= UInt64(byte)
            hash &*= 0x0100_0000_01b3
        }
        return Int(hash % UInt64(self.outbox.count))
    }

    // MARK: posting

    func post(_ command: QueueCommand, to loop: Int) {
        if self.outbox[loop].isEmpty { self.outbox[loop].reserveCapacity(self.outboxSizes[loop]) }
        self.outbox[loop].append(command)
        if !self.outboxScheduled {
            self.outboxScheduled = true
            self.loop.eventLoop.execute { self.sendOutbox() }
        }
    }

    func postToOwner(_ command: QueueCommand, destination: String) {
        self.post(command, to: self.owner(of: destination))
    }

    private func sendOutbox() {
        self.outboxScheduled = false
        for index in self.outbox.indices where !self.outbox[index].isEmpty {
            let batch = self.outbox[index]
            // Not `removeAll(keepingCapacity:)`: while `batch` shares the buffer, that allocates a new one of the
            // full capacity on every send.
            self.outbox[index] = []
            self.outboxSizes[index] = batch.count
            let target = self.loop.broker.loops[index]
            if index == self.loop.index {
                self.handle(batch)
            } else {
                target.eventLoop.execute { target.queueHost.handle(batch) }
            }
        }
    }

    // MARK: handling

    func handle(_ batch: [QueueCommand]) {
        for command in batch {
            switch command {
            case .enqueue(let enqueue):
                self.enqueue(enqueue)
            case .addConsumer(let subscription):
                self.consumers[subscription.consumerID] = subscription
                self.withQueue(subscription.destination) { $0.addConsumer(subscription.consumerID, prefetch: subscription.prefetch) }
            case .removeConsumer(let destination, let consumerID):
                self.consumers[consumerID] = nil
                guard self.queues[destination] != nil else { continue }
                let deadLettered = self.withQueue(destination) { $0.removeConsumer(consumerID) }
                if TempQueueName.isTemporary(destination), self.queues[destination]?.consumerCount == 0 {
                    // A temporary queue ends with its connection, and what it held with it.
                    self.queues[destination] = nil
                    continue
                }
                self.deadLetter(deadLettered, from: destination)
            case .bindDurable(let queue, let pattern, let words):
                self.bindDurable(queue: queue, pattern: pattern, words: words)
            case .unbindDurable(let queue):
                if let binding = self.durableBindings.removeValue(forKey: queue) { self.loop.unsubscribe(binding) }
                if let ended = self.queues.removeValue(forKey: queue), self.store != nil {
                    for storeID in ended.storeIDs { self.storeOperations.append(.delete(storeID: storeID)) }
                }
                if self.store != nil { self.storeOperations.append(.deleteBinding(queue: queue)) }
            case .acknowledge(let destination, let tags, let reply):
                self.withQueue(destination) { $0.acknowledge(tags) }
                if let reply { self.storeWaiters.append(.acknowledged(reply)) }
            case .reject(let destination, let tags, let requeue):
                let deadLettered = self.withQueue(destination) { $0.reject(tags, requeue: requeue) }
                self.deadLetter(deadLettered, from: destination)
            case .returnUndelivered(let destination, let tags):
                self.withQueue(destination) { $0.returnUndelivered(tags) }
            case .deliver(let subscription, let dispatch):
                if subscription.isActive {
                    subscription.sink.deliver(dispatch, to: subscription)
                    self.loop.markDirty(subscription.sink)
                } else {
                    self.postToOwner(.returnUndelivered(destination: subscription.destination, tags: [dispatch.tag]),
                                     destination: subscription.destination)
                }
            case .enqueued(let reply, let refusal):
                reply.sink.enqueueFinished(token: reply.token, refusal: refusal)
            case .room(let command):
                self.loop.roomHost.handle(command)
            }
        }
        self.dispatchDirtyQueues()
        self.submitStoreOperations()
        self.loop.flushDirty()
    }

    private func enqueue(_ enqueue: QueueEnqueue) {
        if enqueue.viaBinding, self.durableBindings[enqueue.destination] == nil {
            // Posted by the binding before the subscription ended: its queue is gone and must stay gone.
            return
        }
        if TempQueueName.isTemporary(enqueue.destination), self.queues[enqueue.destination] == nil {
            // Only its owner creates a temporary queue (by consuming from it); once it is gone, replies are refused.
            if let reply = enqueue.reply {
                let reason = "temporary queue '\(enqueue.destination)' does not exist (its connection is gone)"
                self.post(.enqueued(reply, refusal: reason), to: reply.loopIndex)
            }
            return
        }
        var expiresAt = enqueue.expiresAt
        if expiresAt == nil, let ttl = self.policy(for: enqueue.destination).defaultTTL { expiresAt = WallClock.milliseconds() + ttl }
        var storeID = enqueue.storeID
        let newlyStored = storeID == nil && self.isPersistent(enqueue.message, in: enqueue.destination)
        if newlyStored { storeID = self.loop.broker.makeStoreID() }
        let result = self.withQueue(enqueue.destination) {
            $0.enqueue(enqueue.message, expiresAt: expiresAt, deliveryCount: enqueue.deliveryCount, storeID: storeID)
        }
        switch result {
        case .accepted(let deadLettered):
            if newlyStored, let storeID {
                self.storeOperations.append(.insert(StoredMessage(
                    storeID: storeID, queue: enqueue.destination, message: enqueue.message, expiresAt: expiresAt,
                    deliveryCount: enqueue.deliveryCount
                )))
                if let reply = enqueue.reply {
                    self.storeWaiters.append(.enqueued(reply, destination: enqueue.destination, storeID: storeID))
                }
            } else if let reply = enqueue.reply, reply.wantsSuccess {
                self.post(.enqueued(reply, refusal: nil), to: reply.loopIndex)
            }
            self.deadLetter(deadLettered, from: enqueue.destination)
        case .rejected(let reason):
            // A message that was already stored (a dead letter) and found no room is removed from the store.
            if !newlyStored, let storeID { self.storeOperations.append(.delete(storeID: storeID)) }
            if let reply = enqueue.reply { self.post(.enqueued(reply, refusal: reason), to: reply.loopIndex) }
        }
    }

    /// Sent with `persistent:true` to a queue that is not temporary, and there is a store.
    private func isPersistent(_ message: BrokerMessage, in destination: String) -> Bool {
        self.store != nil && message.headers["persistent"] == "true" && !TempQueueName.isTemporary(destination)
    }

    // MARK: store

    /// Submits this hop's store writes as one batch; whoever waits for them hears back on this loop.
    /// A store write of another part of this loop (the room host), submitted with this hop's batch; `reply` (a
    /// room SEND's receipt) is answered once it is durable.
    func appendStoreOperation(_ operation: StoreOperation, reply: QueueReply? = nil) {
        self.storeOperations.append(operation)
        if let reply { self.storeWaiters.append(.kept(reply)) }
    }

    func submitStoreOperations() {
        guard !self.storeOperations.isEmpty || !self.storeWaiters.isEmpty else { return }
        let operations = self.storeOperations
        let waiters = self.storeWaiters
        // Fresh arrays: `removeAll(keepingCapacity:)` would allocate a copy of the full capacity (see `sendOutbox`).
        self.storeOperations = []
        self.storeWaiters = []
        guard let store = self.store, !operations.isEmpty else {
            self.storeFinished(waiters, error: nil)
            return
        }
        guard !waiters.isEmpty else {
            // Nobody waits (an ACK without a receipt): no hop back. A failed removal leaves the message stored,
            // and it is delivered again after a restart.
            store.submit(operations, completion: nil)
            return
        }
        store.submit(operations) { [self] error in self.storeCompleted(waiters, error: error) }
    }

    /// On the store's writer thread: queues the outcome for this loop, and wakes the loop only for the first of a
    /// run, so the batches one transaction completed come back in one hop.
    private func storeCompleted(_ waiters: [StoreWaiter], error: StoreError?) {
        let first = self.completions.withLockedValue { completions in
            completions.append((waiters, error))
            return completions.count == 1
        }
        guard first else { return }
        self.loop.eventLoop.execute { [self] in
            let completions = self.completions.withLockedValue { completions in
                defer { completions = [] }
                return completions
            }
            for (waiters, error) in completions { self.storeFinished(waiters, error: error) }
        }
    }

    private func storeFinished(_ waiters: [StoreWaiter], error: StoreError?) {
        for waiter in waiters {
            switch waiter {
            case .enqueued(let reply, let destination, let storeID):
                if let error {
                    // Not durable: take it back (unless already delivered) and tell the producer.
                    _ = self.queues[destination]?.removeReady(storeID: storeID)
                    self.post(.enqueued(reply, refusal: "cannot store the message: \(error)"), to: reply.loopIndex)
                } else if reply.wantsSuccess {
                    self.post(.enqueued(reply, refusal: nil), to: reply.loopIndex)
                }
            case .acknowledged(let reply):
                self.post(.enqueued(reply, refusal: error.map { "cannot store the acknowledgement: \($0)" }), to: reply.loopIndex)
            case .kept(let reply):
                self.post(.enqueued(reply, refusal: error.map { "cannot keep the message in the room's history: \($0)" }), to: reply.loopIndex)
            }
        }
    }

    /// Restores what the store held (at start, before connections): durable bindings, then messages in their
    /// queues in stored order, with their delivery counts.
    func restore(messages: [StoredMessage], bindings: [(queue: String, pattern: String)]) {
        for (queue, pattern) in bindings {
            guard let words = LoopBroker.routingWords(pattern, subscribing: true) else { continue }
            self.bindDurable(queue: queue, pattern: pattern, words: words, save: false)
        }
        for stored in messages {
            var enqueue = QueueEnqueue(destination: stored.queue, message: stored.message, expiresAt: stored.expiresAt, reply: nil)
            enqueue.storeID = stored.storeID
            enqueue.deliveryCount = stored.deliveryCount
            self.enqueue(enqueue)
        }
        self.dispatchDirtyQueues()
        self.submitStoreOperations()
    }

    /// Runs `body` on the queue for `destination` (created on first use) and marks it for dispatch.
    @discardableResult
    func withQueue<Result>(_ destination: String, _ body: (inout MessageQueue) -> Result) -> Result {
        if self.queues[destination] == nil {
            self.queues[destination] = MessageQueue(destination: destination, policy: self.policies.policy(for: destination))
            self.startSweeping()
        }
        self.dirtyQueues.insert(destination)
        let result = body(&self.queues[destination]!)
        for storeID in self.queues[destination]!.drainRemovedStoreIDs() { self.storeOperations.append(.delete(storeID: storeID)) }
        return result
    }

    func dispatchDirtyQueues() {
        guard !self.dirtyQueues.isEmpty else { return }
        let now = WallClock.milliseconds()
        // Dispatching posts deliveries and dead letters to outboxes; it never marks a queue dirty, so the set is
        // iterated in place (no copy) and emptied after.
        for destination in self.dirtyQueues where self.queues[destination] != nil {
            let (dispatches, deadLettered) = self.queues[destination]!.dispatch(now: now)
            for storeID in self.queues[destination]!.drainRemovedStoreIDs() { self.storeOperations.append(.delete(storeID: storeID)) }
            for dispatch in dispatches {
                if let storeID = dispatch.message.storeID {
                    self.storeOperations.append(.setDeliveryCount(storeID: storeID, count: dispatch.message.deliveryCount))
                }
                guard let consumer = self.consumers[dispatch.consumer] else { continue }
                self.post(.deliver(consumer, dispatch), to: consumer.loopIndex)
            }
            self.deadLetter(deadLettered, from: destination)
            if self.queues[destination]?.isIdle == true, self.durableBindings[destination] == nil {
                self.queues[destination] = nil
            }
        }
        self.dirtyQueues.removeAll(keepingCapacity: true)
    }

    /// Moves dead letters to the dead-letter queue of `destination`, with headers saying why. A dead-letter queue's
    /// own dead letters are dropped.
    private func deadLetter(_ deadLettered: [DeadLetter], from destination: String) {
        guard !deadLettered.isEmpty else { return }
        guard let target = self.policy(for: destination).deadLetterDestination(for: destination) else {
            // A dead-letter queue's own dead letters are dropped.
            for letter in deadLettered {
                if let storeID = letter.message.storeID { self.storeOperations.append(.delete(storeID: storeID)) }
            }
            return
        }
        let now = WallClock.milliseconds()
        for letter in deadLettered {
            let original = letter.message.message
            // `destination` and `message-id` are set anew by BrokerMessage; the rest passes on.
            var headers = original.headers
            headers.replaceOrAdd("x-death-reason", letter.reason.rawValue)
            headers.replaceOrAdd("x-original-destination", destination)
            headers.replaceOrAdd("x-death-delivery-count", String(letter.message.deliveryCount))
            headers.replaceOrAdd("x-death-time", String(now))
            self.move(letter.message, headers: headers, to: target)
        }
    }

    /// Sends `queued` (with `headers`) to queue `target` as a new message with a fresh delivery count. A stored one
    /// is moved in one store batch: the copy is written with the removal.
    func move(_ queued: QueuedMessage, headers: STOMPHeaders, to target: String) {
        let message = BrokerMessage(
            destination: target, messageID: queued.message.messageID, sendHeaders: headers, body: queued.message.body,
            allocator: ByteBufferAllocator()
        )
        var enqueue = QueueEnqueue(destination: target, message: message, expiresAt: nil, reply: nil)
        if let oldID = queued.storeID {
            let newID = self.loop.broker.makeStoreID()
            self.storeOperations.append(.insert(StoredMessage(storeID: newID, queue: target, message: message, expiresAt: nil, deliveryCount: 0)))
            self.storeOperations.append(.delete(storeID: oldID))
            enqueue.storeID = newID
        }
        self.postToOwner(.enqueue(enqueue), destination: target)
    }

    // MARK: durable subscriptions

    private func bindDurable(queue: String, pattern: String, words: [Substring], save: Bool = true) {
        if let existing = self.durableBindings[queue] {
            if existing.destination == pattern { return }
            // Re-subscribed to another topic: the old binding ends (what it collected stays in the queue).
            self.loop.unsubscribe(existing)
        }
        let binding = TopicSubscription(
            id: queue, destination: pattern, words: words, ackMode: .auto, version: .v1_2,
            sink: DurableBinding(queue: queue, host: self)
        )
        self.durableBindings[queue] = binding
        self.loop.subscribe(binding)
        self.withQueue(queue) { _ in }
        if save, self.store != nil { self.storeOperations.append(.saveBinding(queue: queue, pattern: pattern)) }
    }

    // MARK: expiry

    private func startSweeping() {
        guard self.sweepTask == nil else { return }
        self.sweepTask = self.loop.eventLoop.scheduleRepeatedTask(
            initialDelay: Self.sweepInterval, delay: Self.sweepInterval
        ) { [weak self] _ in
            self?.sweep()
        }
    }

    private func sweep() {
        let now = WallClock.milliseconds()
        for destination in Array(self.queues.keys) {
            let deadLettered = self.queues[destination]!.expire(now: now)
            if !deadLettered.isEmpty {
                self.deadLetter(deadLettered, from: destination)
                self.dirtyQueues.insert(destination)
            }
            for storeID in self.queues[destination]!.drainRemovedStoreIDs() { self.storeOperations.append(.delete(storeID: storeID)) }
        }
        self.dispatchDirtyQueues()
        self.submitStoreOperations()
    }

    /// Enqueues on this loop (a durable binding's queue is owned here), dispatching at the end of the hop.
    fileprivate func enqueueFromBinding(_ message: BrokerMessage, queue: String) {
        var enqueue = QueueEnqueue(destination: queue, message: message, expiresAt: nil, reply: nil)
        enqueue.viaBinding = true
        self.post(.enqueue(enqueue), to: self.loop.index)
    }

    // MARK: introspection (tests, admin)

    func queueStats(_ destination: String) -> (ready: Int, unacked: Int, consumers: Int)? {
        self.queues[destination].map { ($0.readyCount, $0.unackedCount, $0.consumerCount) }
    }

}

/// The topic-side end of a durable subscription: a subscriber in the topic index (on the queue's owning loop) that
/// puts every matching message into the subscription's queue, where it waits while the client is away.
final class DurableBinding: MessageSink {
    let queue: String
    unowned let host: QueueHost
    var needsFlush = false

    init(queue: String, host: QueueHost) {
        self.queue = queue
        self.host = host
    }

    func deliver(_ messages: ArraySlice<BrokerMessage>, to subscription: TopicSubscription) {
        for message in messages { self.host.enqueueFromBinding(message, queue: self.queue) }
    }

    func deliver(_ messages: ArraySlice<BrokerMessage>, to subscription: TopicSubscription, marks: ByteBuffer) {
        self.deliver(messages, to: subscription)
    }

    func sendReceipt(_ receipt: String, headers: [(name: String, value: String)]) {}
    func deliver(_ dispatch: QueueDispatch, to subscription: QueueSubscription) {}
    func enqueueFinished(token: UInt64, refusal: String?) {}
    func flushDeliveries() {}
    func serverIsShuttingDown() {}
}
