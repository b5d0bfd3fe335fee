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

    /// Joins a room or watches its presence. The RECEIPT (if any) follows the snapshot, from `deliverSnapshot`.
    func subscribeRoom(id: String, destination: String, ackMode: AckMode, options: SessionStateMachine.RoomOptions, receipt: String?) {
        guard let name = RoomName.name(of: destination) else { return }
        let isPresence = destination.hasPrefix(RoomName.presencePrefix)
        let feed: RoomName.Feed = isPresence ? (options.countOnly ? .presenceCount : .presence) : .room
        let subscription = TopicSubscription(
            id: id, destination: RoomName.route(feed, room: name), words: RoomName.words(feed, room: name), ackMode: ackMode,
            version: self.version, sink: self
        )
        subscription.cursor = StreamCursor()
        self.subscriptions[id] = subscription
        if ackMode != .auto { self.clientAckTopicSubscriptions += 1 }
        // Subscribed before the owning loop hears of it: whatever it publishes after taking the snapshot reaches us.
        self.loop.subscribe(subscription)
        let room = String(name)
        if isPresence {
            self.loop.watchPresence(room, subscription: subscription, countOnly: options.countOnly, receipt: receipt)
            return
        }
        let resume = options.resumeEpoch.map { (epoch: $0, offset: options.resumeOffset) }
        let join = RoomJoin(
            room: room, subscription: subscription, session: self.sessionID, user: self.userName, meta: options.meta,
            history: options.history, resumeFrom: resume, loopIndex: self.loop.index, receipt: receipt
        )
        self.loop.joinRoom(join)
    }

    /// A room or presence subscription ends (UNSUBSCRIBE or the connection closing): a room member leaves.
    func leaveRoom(_ subscription: TopicSubscription) {
        subscription.cursor?.isActive = false
        guard subscription.destination.hasPrefix(RoomName.roomPrefix) else { return }
        let room = String(subscription.destination.dropFirst(RoomName.roomPrefix.count))
        self.loop.leaveRoom(room, session: self.sessionID, subscription: subscription.id)
    }

    /// A SEND to `/room/<name>`: the owning loop gives it its offset and fans it out. Its receipt waits until the
    /// room keeps it (on disk, with a store).
    func publishToRoom(
        _ destination: String, _ headers: STOMPHeaders, _ body: ByteBuffer, messageID: String, token: UInt64, wantsReceipt: Bool
    ) {
        guard let name = RoomName.name(of: destination) else { return }
        var reply: QueueReply?
        if wantsReceipt {
            reply = QueueReply(loopIndex: self.loop.index, sink: self, token: token, wantsSuccess: true)
            self.queue.expectReply(token)
        }
        self.loop.publishToRoom(String(name), headers: headers, body: body, user: self.userName, messageID: messageID, reply: reply)
    }

    /// A SEND to `/presence/<name>`: merges its `x-presence-*` headers into this session's metadata in the room.
    /// A session not in the room gets an ERROR (through `enqueueFinished`, like a refused queue SEND).
    func updatePresence(_ publish: SessionStateMachine.Publish, token: UInt64, wantsReceipt: Bool) {
        guard let name = RoomName.name(of: publish.destination) else { return }
        var changes: [(key: String, value: String)] = []
        for (header, value) in publish.headers where header.hasPrefix("x-presence-") && header.utf8.count > 11 {
            let key = String(header.dropFirst(11))
            if !changes.contains(where: { $0.key == key }) { changes.append((key, value)) }
        }
        let reply = QueueReply(loopIndex: self.loop.index, sink: self, token: token, wantsSuccess: wantsReceipt)
        if wantsReceipt { self.queue.expectReply(token) }
        let room = String(name)
        self.loop.updatePresence(room, session: self.sessionID, changes: changes, reply: reply)
    }

    /// Writes room or presence MESSAGEs with `marks` (e.g. `x-history:true`) after the per-subscriber head.
    func deliver(_ messages: ArraySlice<BrokerMessage>, to subscription: TopicSubscription, marks: ByteBuffer) {
        guard !self.closed, let transport = self.transport else { return }
        let version = self.version
        for message in messages {
            var head = subscription.head
            head.writeImmutableBuffer(marks)
            if subscription.ackMode != .auto {
                STOMPFrameEncoder.writeHeader("ack", message.messageID, to: &head, version: version)
            }
            transport.write(head: head, body: message.shared(for: version), isText: message.isUTF8)
        }
        self.wroteSinceTick = true
    }
}
