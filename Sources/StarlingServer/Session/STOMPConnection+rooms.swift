import NIOCore
import StarlingBroker
import StarlingSTOMP

/// Rooms and presence (docs/rooms.md): a room SUBSCRIBE joins, a presence SUBSCRIBE watches, a SEND to a room is
/// stamped and fanned out by the room's owning loop, a SEND to a presence feed updates this session's metadata.
extension STOMPConnection {
    /// The user this session is in rooms as, and the author of what it sends: the login, else the client-id, else
    /// the session.
    var userName: String {
        if let login = self.login, !login.isEmpty { return login }
        if let clientID = self.clientID, !clientID.isEmpty { return clientID }
        return self.sessionID
    }

    /// True when a SUBSCRIBE to `destination` reads streams: a room, a presence feed, a topic with a history policy
    /// named exactly with `x-history` or `x-resume-from`, or any topic subscription once some topics keep a last
    /// value (it first gets theirs).
    func isStream(_ destination: String, _ options: SessionStateMachine.RoomOptions?) -> Bool {
        if RoomName.name(of: destination) != nil { return true }
        guard destination.hasPrefix(TopicName.prefix) else { return false }
        return self.readsHistory(destination, options) || self.loop.hasLastValueTopics
    }

    private func readsHistory(_ destination: String, _ options: SessionStateMachine.RoomOptions?) -> Bool {
        options != nil && self.loop.topicHasHistory(destination) && (try? TopicName.publishWords(destination)) != nil
    }

    /// Joins a room, watches its presence, or reads a topic's history. The RECEIPT (if any) follows the snapshot,
    /// from `deliverSnapshot`.
    func subscribeStream(
        id: String, destination: String, ackMode: AckMode, options: SessionStateMachine.RoomOptions?, maxRate: Double, receipt: String?
    ) {
        if destination.hasPrefix(TopicName.prefix), !self.readsHistory(destination, options) {
            self.subscribeLastValues(id: id, destination: destination, ackMode: ackMode, maxRate: maxRate, receipt: receipt)
            return
        }
        let options = options ?? SessionStateMachine.RoomOptions()
        let subscription: TopicSubscription
        let stream: String
        let isPresence = destination.hasPrefix(RoomName.presencePrefix)
        if let name = RoomName.name(of: destination) {
            let feed: RoomName.Feed = isPresence ? (options.countOnly ? .presenceCount : .presence) : .room
            stream = RoomName.roomPrefix + name
            subscription = TopicSubscription(
                id: id, destination: RoomName.route(feed, room: name), words: RoomName.words(feed, room: name), ackMode: ackMode,
                version: self.version, sink: self
            )
        } else {
            guard let words = try? TopicName.publishWords(destination) else { return }
            stream = destination
            subscription = TopicSubscription(id: id, destination: destination, words: words, ackMode: ackMode, version: self.version, sink: self)
            self.pace(subscription, maxRate: maxRate)
        }
        subscription.cursor = StreamCursor()
        self.subscriptions[id] = subscription
        if ackMode != .auto { self.clientAckTopicSubscriptions += 1 }
        // Subscribed before the owning loop hears of it: whatever it publishes after taking the snapshot reaches us.
        self.loop.subscribe(subscription)
        if isPresence {
            self.loop.watchPresence(stream, subscription: subscription, countOnly: options.countOnly, receipt: receipt)
            return
        }
        let resume = options.resumeEpoch.map { (epoch: $0, offset: options.resumeOffset) }
        let join = RoomJoin(
            stream: stream, subscription: subscription, session: self.sessionID, user: self.userName, meta: options.meta,
            history: options.history, resumeFrom: resume, loopIndex: self.loop.index, receipt: receipt
        )
        self.loop.joinRoom(join)
    }

    /// A topic subscription that first gets the last value of every last-value topic it matches (issue 8), marked
    /// `x-snapshot:true`, then live messages with no gap or duplicate per topic, then its RECEIPT.
    private func subscribeLastValues(id: String, destination: String, ackMode: AckMode, maxRate: Double, receipt: String?) {
        guard let words = try? TopicName.patternWords(destination), let pattern = DestinationPattern(destination) else { return }
        let subscription = TopicSubscription(id: id, destination: destination, words: words, ackMode: ackMode, version: self.version, sink: self)
        self.pace(subscription, maxRate: maxRate)
        self.subscriptions[id] = subscription
        if ackMode != .auto { self.clientAckTopicSubscriptions += 1 }
        self.loop.subscribeWithLastValues(subscription, pattern: pattern, receipt: receipt)
    }

    /// A room or presence subscription ends (UNSUBSCRIBE or the connection closing): a room member leaves.
    func leaveRoom(_ subscription: TopicSubscription) {
        subscription.cursor?.isActive = false
        guard subscription.destination.hasPrefix(RoomName.roomPrefix) else { return }
        self.loop.leaveRoom(subscription.destination, session: self.sessionID, subscription: subscription.id)
    }

    /// A SEND to a room (or a topic with history): the owning loop gives it its offset and fans it out. Its receipt
    /// waits until the stream keeps it (on disk, with a store).
    func publishToStream(
        _ destination: String, _ headers: STOMPHeaders, _ body: ByteBuffer, messageID: String, token: UInt64, wantsReceipt: Bool
    ) {
        var reply: QueueReply?
        if wantsReceipt {
            reply = QueueReply(loopIndex: self.loop.index, sink: self, token: token, wantsSuccess: true)
            self.queue.expectReply(token)
        }
        // Room messages always name their author; topic messages when the sender has a login.
        let user = destination.hasPrefix(RoomName.roomPrefix) ? self.userName : self.login.flatMap { $0.isEmpty ? nil : $0 }
        self.loop.publishToStream(destination, headers: headers, body: body, user: user, messageID: messageID, reply: reply)
    }

    /// A SEND to `/presence/<name>`: merges its `x-presence-*` headers into this session's metadata in the room.
    /// A session not in the room gets an ERROR (through `enqueueFinished`, like a refused queue SEND).
    func updatePresence(_ publish: SessionStateMachine.Publish, token: UInt64, wantsReceipt: Bool) {
        guard let name = RoomName.name(of: publish.destination) else { return }
        let changes = SessionStateMachine.presenceMeta(publish.headers)
        let reply = QueueReply(loopIndex: self.loop.index, sink: self, token: token, wantsSuccess: wantsReceipt)
        if wantsReceipt { self.queue.expectReply(token) }
        self.loop.updatePresence(RoomName.roomPrefix + name, session: self.sessionID, changes: changes, reply: reply)
    }

    /// Writes room or presence MESSAGEs with `marks` (e.g. `x-history:true`) after the per-subscriber head.
    /// While the client is slow they wait, in order, with what else must not be lost.
    func deliver(_ messages: ArraySlice<BrokerMessage>, to subscription: TopicSubscription, marks: ByteBuffer) {
        guard !self.closed, self.transport != nil else { return }
        if let backlog = self.backlog {
            for message in messages { backlog.append(message, to: subscription, marks: marks) }
            self.checkBacklogBudget()
            return
        }
        for message in messages { self.write(message, to: subscription, marks: marks) }
    }
}
