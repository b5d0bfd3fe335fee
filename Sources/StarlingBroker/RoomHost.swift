import NIOCore
import StarlingSTOMP

/// A connection joining a room (a SUBSCRIBE to `/room/<name>`), as its owning loop sees it.
public struct RoomJoin: @unchecked Sendable {
    public var room: String
    /// Touched only on `loopIndex`: the owning loop sends it back with the snapshot.
    public var subscription: TopicSubscription
    public var session: String
    public var user: String
    public var meta: [String: String]
    /// `x-history`: how many kept messages to deliver first.
    public var history: Int?
    /// `x-resume-from`: deliver everything after this offset of this epoch first.
    public var resumeFrom: (epoch: String, offset: UInt64)?
    public var loopIndex: Int
    public var receipt: String?

    public init(
        room: String, subscription: TopicSubscription, session: String, user: String, meta: [String: String],
        history: Int?, resumeFrom: (epoch: String, offset: UInt64)?, loopIndex: Int, receipt: String?
    ) {
        self.room = room
        self.subscription = subscription
        self.session = session
        self.user = user
        self.meta = meta
        self.history = history
        self.resumeFrom = resumeFrom
        self.loopIndex = loopIndex
        self.receipt = receipt
    }
}

/// What a stream subscription (room or presence) gets first, sent by the room's loop to the subscriber's loop.
struct StreamSnapshot: @unchecked Sendable {
    var subscription: TopicSubscription
    var messages: [BrokerMessage]
    /// The stream's offset when the snapshot was taken: live messages up to it are already covered.
    var head: UInt64
    /// The messages are history (marked `x-history:true`).
    var isHistory: Bool
    /// A resume that could not be honoured: the first message is marked `x-recovered:false`.
    var notRecovered: Bool
    var receipt: String?
    var receiptHeaders: [(name: String, value: String)]
}

/// Work for a loop's `RoomHost`, carried in the queue hosts' ordered outboxes (`QueueCommand.room`).
enum RoomCommand: @unchecked Sendable {
    // To the room's owning loop:
    /// `reply`: the SEND asked for a receipt (answered once the message is kept on disk, when there is a store).
    case publish(room: String, headers: STOMPHeaders, body: ByteBuffer, user: String, messageID: String, reply: QueueReply?)
    case join(RoomJoin)
    case leave(room: String, session: String, subscription: String)
    case watchPresence(room: String, subscription: TopicSubscription, countOnly: Bool, loopIndex: Int, receipt: String?)
    case updatePresence(room: String, session: String, changes: [(key: String, value: String)], reply: QueueReply)
    // To a subscriber's loop:
    case snapshot(StreamSnapshot)
}

/// The rooms owned by one event loop (a room's name picks its loop, as for queues): their streams, history and
/// presence. Room messages and presence events are published through the loops' topic fan-out. Touched only on
/// its loop (timers included), like `QueueHost`.
final class RoomHost: @unchecked Sendable {
    unowned let loop: LoopBroker
    let policies: RoomPolicies
    private var rooms: [String: Room] = [:]
    /// Offsets of presence events, over all rooms of this loop: a feed's offsets keep growing even when its room is
    /// forgotten and comes back.
    private var presenceVersion: UInt64 = 0
    private var eventCounter: UInt64 = 0
    private var sweepTask: RepeatedTask?
    private let allocator = ByteBufferAllocator()

    /// How often rooms drop expired history and are forgotten once empty.
    static let sweepInterval = TimeAmount.seconds(10)
    /// Count-only presence subscribers get at most one update per this interval.
    static let countInterval = TimeAmount.seconds(1)

    init(loop: LoopBroker, policies: RoomPolicies) {
        self.loop = loop
        self.policies = policies
    }

    /// The loop owning room `name`.
    func owner(of name: String) -> Int {
        self.loop.queueHost.owner(of: RoomName.roomPrefix + name)
    }

    func post(_ command: RoomCommand, toOwnerOf name: String) {
        self.loop.queueHost.post(.room(command), to: self.owner(of: name))
    }

    func handle(_ command: RoomCommand) {
        switch command {
        case .publish(let name, let headers, let body, let user, let messageID, let reply):
            self.publish(room: name, headers: headers, body: body, user: user, messageID: messageID, reply: reply)
        case .join(let join):
            self.join(join)
        case .leave(let name, let session, let subscription):
            guard let room = self.rooms[name] else { return }
            if let change = room.leave(Room.ConnectionKey(session: session, subscription: subscription)) {
                self.publishPresence(change, in: room)
            }
            self.forgetIfEmpty(room)
        case .watchPresence(let name, let subscription, let countOnly, let loopIndex, let receipt):
            let room = self.room(name)
            if countOnly {
                room.countFeedActive = true
                if room.lastPublishedCount < 0 { room.lastPublishedCount = room.members.count }
            }
            let state = self.presenceMessage(room, kind: "state", json: room.stateJSON(countOnly: countOnly), offset: self.presenceVersion)
            let snapshot = StreamSnapshot(
                subscription: subscription, messages: [state], head: self.presenceVersion, isHistory: false, notRecovered: false,
                receipt: receipt, receiptHeaders: []
            )
            self.loop.queueHost.post(.room(.snapshot(snapshot)), to: loopIndex)
            self.forgetIfEmpty(room)
        case .updatePresence(let name, let session, let changes, let reply):
            let updated = self.rooms[name]?.update(session: session, changes: changes) ?? []
            if updated.isEmpty {
                let refusal = "this session is not in room '\(RoomName.roomPrefix)\(name)': SUBSCRIBE to it before updating presence"
                self.loop.queueHost.post(.enqueued(reply, refusal: refusal), to: reply.loopIndex)
                return
            }
            for user in updated { self.publishPresence(.update(user: user), in: self.rooms[name]!) }
            if reply.wantsSuccess { self.loop.queueHost.post(.enqueued(reply, refusal: nil), to: reply.loopIndex) }
        case .snapshot(let snapshot):
            self.loop.deliverSnapshot(snapshot)
        }
    }

    // MARK: rooms

    private func room(_ name: String, epoch: String? = nil) -> Room {
        if let room = self.rooms[name] { return room }
        let epoch = epoch ?? String(UInt64.random(in: 1...UInt64.max), radix: 36)
        let room = Room(name: name, epoch: epoch, policy: self.policies.policy(for: RoomName.roomPrefix + name))
        self.rooms[name] = room
        if self.sweepTask == nil {
            self.sweepTask = self.loop.eventLoop.scheduleRepeatedTask(initialDelay: Self.sweepInterval, delay: Self.sweepInterval) { _ in
                self.sweep()
            }
        }
        return room
    }

    private func forgetIfEmpty(_ room: Room) {
        guard room.isEmpty, self.rooms[room.name] === room else { return }
        self.rooms[room.name] = nil
        if room.countFeedActive, room.lastPublishedCount != 0 { self.publishCount(room) }
    }

    private func sweep() {
        let now = WallClock.milliseconds()
        for room in Array(self.rooms.values) {
            self.expire(room, now: now)
            self.forgetIfEmpty(room)
        }
        self.loop.queueHost.submitStoreOperations()
    }

    /// Drops the room's expired history, from the store too.
    private func expire(_ room: Room, now: Int64) {
        guard let through = room.expire(now: now), self.loop.queueHost.store != nil else { return }
        self.loop.queueHost.appendStoreOperation(.trimRoom(room: room.name, through: through))
    }

    /// Puts back the rooms' kept messages after a restart (each room's in offset order), with their epochs, so
    /// clients resume across the restart.
    func restore(_ messages: [StoredRoomMessage]) {
        let now = WallClock.milliseconds()
        for stored in messages {
            let room = self.rooms[stored.room] ?? self.room(stored.room, epoch: stored.epoch)
            room.restore(stored.message, keptAt: stored.keptAt)
        }
        for room in Array(self.rooms.values) {
            self.expire(room, now: now)
            self.forgetIfEmpty(room)
        }
        self.loop.queueHost.submitStoreOperations()
    }

    private func publish(room name: String, headers: STOMPHeaders, body: ByteBuffer, user: String, messageID: String, reply: QueueReply?) {
        let room = self.room(name)
        let now = WallClock.milliseconds()
        self.expire(room, now: now)
        let offset = room.nextOffset()
        let message = BrokerMessage(
            destination: RoomName.roomPrefix + name, messageID: messageID, sendHeaders: headers, body: body,
            allocator: self.allocator,
            serverHeaders: [("x-offset", String(offset)), ("x-epoch", room.epoch), ("user-name", user)], offset: offset
        )
        let oldest = room.oldestKeptOffset
        if room.keep(message, now: now), self.loop.queueHost.store != nil {
            // Kept in the store too (group commit with the loop's other writes); what it pushed out goes.
            self.loop.queueHost.appendStoreOperation(
                .keepRoomMessage(StoredRoomMessage(room: name, epoch: room.epoch, keptAt: now, message: message)), reply: reply
            )
            if let oldest, let newOldest = room.oldestKeptOffset, newOldest > oldest {
                self.loop.queueHost.appendStoreOperation(.trimRoom(room: name, through: newOldest - 1))
            }
        } else if let reply, reply.wantsSuccess {
            self.loop.queueHost.post(.enqueued(reply, refusal: nil), to: reply.loopIndex)
        }
        self.loop.publish(message, words: RoomName.words(.room, room: Substring(name)))
        self.forgetIfEmpty(room)
    }

    private func join(_ join: RoomJoin) {
        let room = self.room(join.room)
        self.expire(room, now: WallClock.milliseconds())
        var messages: [BrokerMessage] = []
        var recovered: Bool?
        if let resume = join.resumeFrom {
            if let missed = room.messages(after: resume.offset, epoch: resume.epoch) {
                messages = missed
                recovered = true
            } else {
                recovered = false
                messages = room.last(join.history ?? 0)
            }
        } else if let count = join.history {
            messages = room.last(count)
        }
        let key = Room.ConnectionKey(session: join.session, subscription: join.subscription.id)
        if let change = room.join(key, user: join.user, meta: join.meta) { self.publishPresence(change, in: room) }
        var receiptHeaders: [(name: String, value: String)] = [("x-epoch", room.epoch), ("x-offset", String(room.lastOffset))]
        if let recovered { receiptHeaders.append(("x-recovered", recovered ? "true" : "false")) }
        let snapshot = StreamSnapshot(
            subscription: join.subscription, messages: messages, head: room.lastOffset, isHistory: true,
            notRecovered: recovered == false, receipt: join.receipt, receiptHeaders: receiptHeaders
        )
        self.loop.queueHost.post(.room(.snapshot(snapshot)), to: join.loopIndex)
    }

    // MARK: presence

    private func publishPresence(_ change: Room.PresenceChange, in room: Room) {
        self.presenceVersion += 1
        let diff = self.presenceMessage(room, kind: "diff", json: room.diffJSON(change), offset: self.presenceVersion)
        self.loop.publish(diff, words: RoomName.words(.presence, room: Substring(room.name)))
        if room.countFeedActive, !room.countPublishScheduled {
            room.countPublishScheduled = true
            self.loop.eventLoop.scheduleTask(in: Self.countInterval) {
                room.countPublishScheduled = false
                self.publishCount(room)
            }
        }
    }

    /// Publishes the member count to count-only subscribers if it changed since the last time.
    private func publishCount(_ room: Room) {
        let count = room.members.count
        guard count != room.lastPublishedCount else { return }
        room.lastPublishedCount = count
        self.presenceVersion += 1
        let message = self.presenceMessage(
            room, kind: "count", json: "{\"count\":\(count)}", offset: self.presenceVersion,
            route: RoomName.route(.presenceCount, room: Substring(room.name))
        )
        self.loop.publish(message, words: RoomName.words(.presenceCount, room: Substring(room.name)))
    }

    private func presenceMessage(_ room: Room, kind: String, json: String, offset: UInt64, route: String? = nil) -> BrokerMessage {
        self.eventCounter += 1
        var headers = STOMPHeaders()
        headers.add("content-type", "application/json")
        return BrokerMessage(
            destination: RoomName.presencePrefix + room.name, messageID: "presence-\(self.loop.index)-\(self.eventCounter)",
            sendHeaders: headers, body: ByteBuffer(string: json), allocator: self.allocator,
            serverHeaders: [("x-presence", kind), ("x-presence-count", String(room.members.count))], offset: offset, route: route
        )
    }
}

// MARK: - the sessions' side

extension LoopBroker {
    /// Joins a room; the subscription (already subscribed on this loop, with a cursor) gets its history, then live
    /// messages, then the RECEIPT `join.receipt`.
    public func joinRoom(_ join: RoomJoin) {
        self.roomHost.post(.join(join), toOwnerOf: join.room)
    }

    public func leaveRoom(_ room: String, session: String, subscription: String) {
        self.roomHost.post(.leave(room: room, session: session, subscription: subscription), toOwnerOf: room)
    }

    /// A SEND to room `room` by `user`: stamped with its offset and fanned out by the room's loop. `reply` hears
    /// when it is kept (on disk, with a store).
    public func publishToRoom(
        _ room: String, headers: STOMPHeaders, body: ByteBuffer, user: String, messageID: String, reply: QueueReply? = nil
    ) {
        self.roomHost.post(
            .publish(room: room, headers: headers, body: body, user: user, messageID: messageID, reply: reply), toOwnerOf: room
        )
    }

    /// Starts a presence subscription (subscribed on this loop, with a cursor): the state, then changes.
    public func watchPresence(_ room: String, subscription: TopicSubscription, countOnly: Bool, receipt: String?) {
        self.roomHost.post(
            .watchPresence(room: room, subscription: subscription, countOnly: countOnly, loopIndex: self.index, receipt: receipt),
            toOwnerOf: room
        )
    }

    /// Merges `changes` into the metadata of `session`'s connections in `room`; `reply` hears a refusal when the
    /// session is not in it (and success, if it wants that).
    public func updatePresence(_ room: String, session: String, changes: [(key: String, value: String)], reply: QueueReply) {
        self.roomHost.post(.updatePresence(room: room, session: session, changes: changes, reply: reply), toOwnerOf: room)
    }
}
