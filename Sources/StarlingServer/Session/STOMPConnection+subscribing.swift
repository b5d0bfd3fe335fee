import StarlingBroker

/// SUBSCRIBE to a queue, a temporary queue, a `/user/` destination or a topic pattern (durable or not).
extension STOMPConnection {
    /// Subscribes to a destination the state machine accepted. Returns false when refused (ERROR sent).
    func subscribe(
        id: String, destination: String, ackMode: AckMode, prefetch: Int?, durable: Bool, maxRate: Double, receipt: String?
    ) -> Bool {
        if destination.hasPrefix(QueueName.prefix) {
            if TempQueueName.isTemporary(destination), !TempQueueName.belongs(destination, to: self.sessionID) {
                self.fail("'\(destination)' is another connection's temporary queue: only its connection may consume from it",
                          receiptID: receipt, detail: nil)
                return false
            }
            self.subscribeQueue(id: id, destination: destination, ackMode: ackMode, prefetch: prefetch)
            return true
        }
        if destination.hasPrefix(TempQueueName.prefix) {
            let name = destination.dropFirst(TempQueueName.prefix.count)
            self.subscribeQueue(
                id: id, destination: TempQueueName.queue(session: self.sessionID, name: name), ackMode: ackMode, prefetch: prefetch
            )
            return true
        }
        let pattern: String
        let words: [Substring]
        if let rest = UserDestination.subscribeRest(destination) {
            guard let login = self.login, !login.isEmpty else {
                self.fail("'\(destination)' needs a login: /user/ destinations belong to the CONNECT login", receiptID: receipt, detail: nil)
                return false
            }
            pattern = UserDestination.routing(login: Substring(login), rest: rest)
            words = UserDestination.words(login: Substring(login), rest: rest)
        } else {
            // The state machine validated the destination; a failure here is a bug, not a client error.
            guard let topicWords = try? TopicName.patternWords(destination) else { return false }
            pattern = destination
            words = topicWords
        }
        if durable {
            guard let clientID = self.clientID ?? self.login, !clientID.isEmpty else {
                self.fail("a durable subscription needs a client-id (or login) header on CONNECT to be found again",
                          receiptID: receipt, detail: nil)
                return false
            }
            // The durable subscription is a queue bound to the topic: it collects while the client is away.
            let queue = Self.durableQueue(clientID: clientID, subscriptionID: id)
            self.loop.bindDurable(queue: queue, pattern: pattern, words: words)
            self.subscribeQueue(id: id, destination: queue, ackMode: ackMode, prefetch: prefetch, durable: true)
            return true
        }
        let subscription = TopicSubscription(
            id: id, destination: pattern, words: words, ackMode: ackMode, version: self.version, sink: self
        )
        self.pace(subscription, maxRate: maxRate)
        self.subscriptions[id] = subscription
        if ackMode != .auto { self.clientAckTopicSubscriptions += 1 }
        self.loop.subscribe(subscription)
        return true
    }
}
