import NIOCore
import StarlingSTOMP

/// What operators do to the queues of one loop (the admin API, a configuration reload) and what they look at.
extension QueueHost {
    /// Deletes the ready messages of `destination` (from the store too); nil when this loop holds no such queue.
    func purge(_ destination: String) -> Int? {
        guard self.queues[destination] != nil else { return nil }
        let removed = self.withQueue(destination) { $0.removeAllReady() }
        for message in removed {
            if let storeID = message.storeID { self.storeOperations.append(.delete(storeID: storeID)) }
        }
        self.submitStoreOperations()
        return removed.count
    }

    /// Moves the ready messages of dead-letter queue `destination` back to the queues they died in (their
    /// `x-original-destination`), with a fresh delivery count; stored ones are moved in one store batch, as dead
    /// letters are. Nil when this loop holds no such queue.
    func redrive(_ destination: String) -> Int? {
        guard self.queues[destination] != nil else { return nil }
        let removed = self.withQueue(destination) { $0.removeAllReady() }
        let suffix = self.policy(for: destination).deadLetterSuffix
        let fallback = destination.hasSuffix(suffix) ? String(destination.dropLast(suffix.count)) : destination
        for queued in removed {
            let original = queued.message
            // Only a queue whose dead-letter queue this is: the header is the sender's to set, not to aim a redrive.
            let named = original.headers["x-original-destination"]
            let target = named.flatMap { $0.hasPrefix(QueueName.prefix) && $0 + self.policy(for: $0).deadLetterSuffix == destination ? $0 : nil }
                ?? fallback
            self.move(queued, headers: original.headers, to: target)
        }
        self.submitStoreOperations()
        return removed.count
    }

    /// New policies (a configuration reload): for the queues created from now on and for the existing ones.
    func update(_ policies: QueuePolicies) {
        self.policies = policies
        for destination in Array(self.queues.keys) {
            self.queues[destination]!.policy = policies.policy(for: destination)
            self.dirtyQueues.insert(destination)
        }
        self.dispatchDirtyQueues()
    }

    /// Every queue this loop owns, with its counts (temporary queues included).
    func allQueueStats() -> [QueueStatistics] {
        self.queues.values.map { QueueStatistics(destination: $0.destination, ready: $0.readyCount, unacked: $0.unackedCount, consumers: $0.consumerCount) }
    }
}
