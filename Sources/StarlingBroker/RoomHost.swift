import NIOCore
import StarlingSTOMP

/// A connection joining a room (a SUBSCRIBE to `/room/<name>`), or reading a topic's history, as the stream's
/// owning loop sees it.
public struct RoomJoin: @unchecked Sendable {
    /// The room's or topic's destination.
    public var stream: String
    /// Touched only on `loopIndex`: the owning loop sends it back with the snapshot.
    public var subscription: TopicSubscription
    public var session: String
    public var user: String
    public var meta: [String: String]
    /// A room member (a topic's history reader is not one).
    public var isMember: Bool { self.stream.hasPrefix(RoomName.roomPrefix) }
    /// `x-history`: how many kept messages to deliver first.
    public var history: Int?
    /// `x-resume-from`: deliver everything after this offset of this epoch first.
    public var resumeFrom: (epoch: String, offset: UInt64)?
    public var loopIndex: Int
    public var receipt: String?

    public init(
        stream: String, subscription: TopicSubscription, session: String, user: String, meta: [String: String],
        history: Int?, resumeFrom: (epoch: String, offset: UInt64)?, loopIndex: Int, receipt: String?
    ) {
        self.stream = stream
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

/// One loop's part of a last-value subscription's snapshot: the newest message of each of its last-value topics
/// matching the subscription, and the offset each topic had when it was taken.
struct LastValueSnapshot: @unchecked Sendable {
    var subscription: TopicSubscription
    var messages: [BrokerMessage]
    var heads: [(destination: String, offset: UInt64)]
    var receipt: String?
}

/// Work for a loop's `RoomHost`, carried in the queue hosts' ordered outboxes (`QueueCommand.room`).
enum RoomCommand: @unchecked Sendable {
    // To the owning loop of the stream (a room's or a topic's destination; presence belongs to its room's):
    /// `user`: the author (`user-name`), nil for none. `reply`: the SEND asked for a receipt (answered once the
    /// message is kept on disk, when there is a store).
    case publish(stream: String, headers: STOMPHeaders, body: ByteBuffer, user: String?, messageID: String, reply: QueueReply?)
    case join(RoomJoin)
    case leave(stream: String, session: String, subscription: String)
    case watchPresence(stream: String, subscription: TopicSubscription, countOnly: Bool, loopIndex: Int, receipt: String?)
    case updatePresence(stream: String, session: String, changes: [(key: String, value: String)], reply: QueueReply)
    // To every loop (its last-value topics matching `pattern`):
    case lastValues(pattern: DestinationPattern, subscription: TopicSubscription, loopIndex: Int, receipt: String?)
    // To a subscriber's loop:
    case snapshot(StreamSnapshot)
    case lastValueSnapshot(LastValueSnapshot)
}

/// The rooms (and topics with history) owned by one event loop (the destination picks its loop, as for queues):
/// their streams, history and presence. Their messages and presence events are published through the loops' topic
/// fan-out. Touched only on its loop (timers included), like `QueueHost`.
final class RoomHost: @unchecked Sendable {
    unowned let loop: LoopBroker
    private(set) var policies: HistoryPolicies
    let limits: RoomLimits
    private var rooms: [String: Room] = [:]
    /// Offsets of presence events, over all rooms of this loop: a feed's offsets keep growing even when its room is
    /// forgotten and comes back.
    private var presenceVersion: UInt64 = 0
    /// Rooms with count-only presence subscribers. Kept apart from the rooms: a room may be forgotten (empty) and
    /// come back while they wait for its count.
    private var countFeeds: Set<String> = []
    private var eventCounter: UInt64 = 0
    private var sweepTask: RepeatedTask?
    private let allocator = ByteBufferAllocator()

    /// How often rooms drop expired history and are forgotten once empty.
    static let sweepInterval = TimeAmount.seconds(10)
    /// Count-only presence subscribers get at most one update per this interval.
    static let countInterval = TimeAmount.seconds(1)

    init(loop: LoopBroker, policies: HistoryPolicies, limits: RoomLimits) {
        self.loop = loop
        self.policies = policies
        self.limits = limits
    }

    /// New policies (a configuration reload): for rooms created from now on and for the existing ones (a shorter
    /// history drops the oldest kept messages at the next append or sweep).
    func update(_ policies: HistoryPolicies) {
        self.policies = policies
        self.topicHistoryCache.removeAll()
        var noHistory = HistoryPolicy()
        noHistory.history = 0
        for room in self.rooms.values { room.policy = policies.policy(for: room.stream) ?? noHistory }
    }

    /// The rooms and topics with history this loop owns (for the admin API).
    func summaries() -> [RoomSummary] {
        self.rooms.values.map { RoomSummary(stream: $0.stream, members: $0.members.count, lastOffset: $0.lastOffset, kept: $0.keptCount) }
    }

    /// The members of room `stream` with their metadata and connection counts; nil when this loop holds no such room.
    func members(of stream: String) -> [RoomMember]? {
        guard let room = self.rooms[stream] else { return nil }
        return room.members.map { RoomMember(user: $0.key, meta: $0.value.meta, connections: $0.value.connections.count) }
            .sorted { $0.user < $1.user }
    }

    /// Whether a topic has a history policy, by destination: looked up once per destination, not per SEND.
    private var topicHistoryCache: [String: Bool] = [:]

    func topicHasHistory(_ destination: String) -> Bool {
        if let known = self.topicHistoryCache[destination] { return known }
        if self.topicHistoryCache.count >= LoopBroker.cacheLimit { self.topicHistoryCache.removeAll(keepingCapacity: true) }
        let known = self.policies.policy(for: destination) != nil
        self.topicHistoryCache[destination] = known
        return known
    }

    /// The loop owning stream `stream` (a room's or topic's destination).
    func owner(of stream: String) -> Int {
        self.loop.queueHost.owner(of: stream)
    }

    func post(_ command: RoomCommand, toOwnerOf stream: String) {
        self.loop.queueHost.post(.room(command), to: self.owner(of: stream))
    }

    func handle(_ command: RoomCommand) {
        switch command {
        case .publish(let stream, let headers, let body, let user, let messageID, let reply):
            self.publish(stream: stream, headers: headers, body: body, user: user, messageID: messageID, reply: reply)
        case .join(let join):
            self.join(join)
        case .leave(let stream, let session, let subscription):
            guard let room = self.rooms[stream] else { return }
            if let change = room.leave(Room.ConnectionKey(session: session, subscription: subscription)) {
                self.publishPresence(change, in: room)
            }
            self.forgetIfEmpty(room)
        case .watchPresence(let stream, let subscription, let countOnly, let loopIndex, let receipt):
            let room = self.room(stream)
            if countOnly {
                self.countFeeds.insert(stream)
                if room.lastPublishedCount < 0 { room.lastPublishedCount = room.members.count }
            }
            let state = self.presenceMessage(room, kind: "state", json: room.stateJSON(countOnly: countOnly), offset: self.presenceVersion)
            let snapshot = StreamSnapshot(
                subscription: subscription, messages: [state], head: self.presenceVersion, isHistory: false, notRecovered: false,
                receipt: receipt, receiptHeaders: []
            )
            self.loop.queueHost.post(.room(.snapshot(snapshot)), to: loopIndex)
            self.forgetIfEmpty(room)
        case .updatePresence(let stream, let session, let changes, let reply):
            let refusal: String
            switch self.rooms[stream]?.update(session: session, changes: changes, maxMetaBytes: self.limits.maxMetaBytes) ?? .notMember {
            case .updated(let users):
                // An update that changes nothing gives no diff.
                for user in users { self.publishPresence(.update(user: user), in: self.rooms[stream]!) }
                if reply.wantsSuccess { self.loop.queueHost.post(.enqueued(reply, refusal: nil), to: reply.loopIndex) }
                return
            case .notMember:
                refusal = "this session is not in room '\(stream)': SUBSCRIBE to it before updating presence"
            case .tooLarge:
                refusal = "presence metadata in '\(stream)' would exceed \(self.limits.maxMetaBytes) bytes (presence-max-meta-bytes)"
            }
            self.loop.queueHost.post(.enqueued(reply, refusal: refusal), to: reply.loopIndex)
        case .lastValues(let pattern, let subscription, let loopIndex, let receipt):
            var part = LastValueSnapshot(subscription: subscription, messages: [], heads: [], receipt: receipt)
            let now = WallClock.milliseconds()
            for (stream, room) in self.rooms where room.policy.lastValue && pattern.matches(stream) {
                self.expire(room, now: now)
                part.heads.append((stream, room.lastOffset))
                part.messages.append(contentsOf: room.last(1))
            }
            self.loop.queueHost.post(.room(.lastValueSnapshot(part)), to: loopIndex)
        case .snapshot(let snapshot):
            self.loop.deliverSnapshot(snapshot)
        case .lastValueSnapshot(let part):
            self.loop.deliverLastValues(part)
        }
    }

    // MARK: rooms

    private func room(_ stream: String, epoch: String? = nil) -> Room {
        if let room = self.rooms[stream] { return room }
        let epoch = epoch ?? String(UInt64.random(in: 1...UInt64.max), radix: 36)
        // A topic whose history policy went away (a restart with another configuration) keeps nothing.
        var noHistory = HistoryPolicy()
        noHistory.history = 0
        let room = Room(stream: stream, epoch: epoch, policy: self.policies.policy(for: stream) ?? noHistory)
        self.rooms[stream] = room
        if self.sweepTask == nil {
            self.sweepTask = self.loop.eventLoop.scheduleRepeatedTask(initialDelay: Self.sweepInterval, delay: Self.sweepInterval) { _ in
                self.sweep()
            }
        }
        return room
    }

    /// The room of `stream`, its expired history dropped. One left with nothing (no member, nothing kept) after
    /// having had messages is forgotten first: it starts again in a new epoch, so no resume claims continuity.
    private func activeRoom(_ stream: String, now: Int64) -> Room {
        let room = self.room(stream)
        self.expire(room, now: now)
        guard room.isEmpty, room.lastOffset > 0 else { return room }
        self.forgetIfEmpty(room)
        return self.room(stream)
    }

    private func forgetIfEmpty(_ room: Room) {
        guard room.isEmpty, self.rooms[room.stream] === room else { return }
        self.rooms[room.stream] = nil
        if self.countFeeds.contains(room.stream), room.lastPublishedCount != 0 { self.publishCount(room) }
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
        self.loop.queueHost.appendStoreOperation(.trimStream(stream: room.stream, through: through))
    }

    /// Puts back the rooms' kept messages after a restart (each room's in offset order), with their epochs, so
    /// clients resume across the restart.
    func restore(_ messages: [KeptMessage]) {
        let now = WallClock.milliseconds()
        for stored in messages {
            let room = self.rooms[stored.stream] ?? self.room(stored.stream, epoch: stored.epoch)
            room.restore(stored.message, keptAt: stored.keptAt)
        }
        for room in Array(self.rooms.values) {
            self.expire(room, now: now)
            self.forgetIfEmpty(room)
        }
        self.loop.queueHost.submitStoreOperations()
    }

    private func publish(stream: String, headers: STOMPHeaders, body: ByteBuffer, user: String?, messageID: String, reply: QueueReply?) {
        guard let words = LoopBroker.routingWords(stream) else { return }
        let now = WallClock.milliseconds()
        let room = self.activeRoom(stream, now: now)
        let offset = room.nextOffset()
        var stamps: [(name: String, value: String)] = [("x-offset", String(offset)), ("x-epoch", room.epoch)]
        if let user { stamps.append(("user-name", user)) }
        let message = BrokerMessage(
            destination: stream, messageID: messageID, sendHeaders: headers, body: body, allocator: self.allocator,
            serverHeaders: stamps, offset: offset, delivery: self.loop.deliveryPolicy(for: stream)
        )
        let oldest = room.oldestKeptOffset
        if room.keep(message, now: now), self.loop.queueHost.store != nil {
            // Kept in the store too (group commit with the loop's other writes); what it pushed out goes.
            self.loop.queueHost.appendStoreOperation(
                .keepMessage(KeptMessage(stream: stream, epoch: room.epoch, keptAt: now, message: message)), reply: reply
            )
            if let oldest, let newOldest = room.oldestKeptOffset, newOldest > oldest {
                self.loop.queueHost.appendStoreOperation(.trimStream(stream: stream, through: newOldest - 1))
            }
        } else if let reply, reply.wantsSuccess {
            self.loop.queueHost.post(.enqueued(reply, refusal: nil), to: reply.loopIndex)
        }
        self.loop.publish(message, words: words)
        self.forgetIfEmpty(room)
    }

    private func join(_ join: RoomJoin) {
        let room = self.activeRoom(join.stream, now: WallClock.milliseconds())
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
        if join.isMember {
            let key = Room.ConnectionKey(session: join.session, subscription: join.subscription.id)
            if let change = room.join(key, user: join.user, meta: join.meta) { self.publishPresence(change, in: room) }
        }
        var receiptHeaders: [(name: String, value: String)] = [("x-epoch", room.epoch), ("x-offset", String(room.lastOffset))]
        if let recovered { receiptHeaders.append(("x-recovered", recovered ? "true" : "false")) }
        let snapshot = StreamSnapshot(
            subscription: join.subscription, messages: messages, head: room.lastOffset, isHistory: true,
            notRecovered: recovered == false, receipt: join.receipt, receiptHeaders: receiptHeaders
        )
        self.loop.queueHost.post(.room(.snapshot(snapshot)), to: join.loopIndex)
        self.forgetIfEmpty(room)
    }

    // MARK: presence

    private func publishPresence(_ change: Room.PresenceChange, in room: Room) {
        self.presenceVersion += 1
        let diff = self.presenceMessage(room, kind: "diff", json: room.diffJSON(change), offset: self.presenceVersion)
        self.loop.publish(diff, words: RoomName.words(.presence, room: room.name))
        if self.countFeeds.contains(room.stream), !room.countPublishScheduled {
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
            route: RoomName.route(.presenceCount, room: room.name)
        )
        self.loop.publish(message, words: RoomName.words(.presenceCount, room: room.name))
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
    /// Joins a room, or starts reading a topic's history; the subscription (already subscribed on this loop, with a
    /// cursor) gets its history, then live messages, then the RECEIPT `join.receipt`.
    public func joinRoom(_ join: RoomJoin) {
        self.roomHost.post(.join(join), toOwnerOf: join.stream)
    }

    /// A room member's connection leaves (`stream`: the room's destination).
    public func leaveRoom(_ stream: String, session: String, subscription: String) {
        self.roomHost.post(.leave(stream: stream, session: session, subscription: subscription), toOwnerOf: stream)
    }

    /// A SEND to a room, or a topic with history: stamped with its offset and fanned out by the stream's loop.
    /// `user`: the author (`user-name`). `reply` hears when it is kept (on disk, with a store).
    public func publishToStream(
        _ stream: String, headers: STOMPHeaders, body: ByteBuffer, user: String?, messageID: String, reply: QueueReply? = nil
    ) {
        self.roomHost.post(
            .publish(stream: stream, headers: headers, body: body, user: user, messageID: messageID, reply: reply), toOwnerOf: stream
        )
    }

    /// Starts a presence subscription to room `stream` (subscribed on this loop, with a cursor): the state, then
    /// changes.
    public func watchPresence(_ stream: String, subscription: TopicSubscription, countOnly: Bool, receipt: String?) {
        self.roomHost.post(
            .watchPresence(stream: stream, subscription: subscription, countOnly: countOnly, loopIndex: self.index, receipt: receipt),
            toOwnerOf: stream
        )
    }

    /// Merges `changes` into the metadata of `session`'s connections in room `stream`; `reply` hears a refusal
    /// when the session is not in it (and success, if it wants that).
    public func updatePresence(_ stream: String, session: String, changes: [(key: String, value: String)], reply: QueueReply) {
        self.roomHost.post(.updatePresence(stream: stream, session: session, changes: changes, reply: reply), toOwnerOf: stream)
    }

    /// True when topic SUBSCRIBEs first get the last values of the topics they match (a policy asks for them).
    public var hasLastValueTopics: Bool { self.roomHost.policies.coversLastValues }

    /// Subscribes `subscription` (a topic pattern) so that it first gets the last values: every loop sends the newest
    /// message of its last-value topics matching `pattern`, then live messages follow, then the RECEIPT `receipt`.
    public func subscribeWithLastValues(_ subscription: TopicSubscription, pattern: DestinationPattern, receipt: String?) {
        subscription.cursor = StreamCursor.lastValues(loops: self.broker.loops.count)
        // Subscribed before any loop takes its snapshot: whatever they publish after it reaches us.
        self.subscribe(subscription)
        for target in self.broker.loops.indices {
            self.queueHost.post(.room(.lastValues(pattern: pattern, subscription: subscription, loopIndex: self.index, receipt: receipt)), to: target)
        }
    }

    /// True when SENDs to topic `destination` go through its stream (a history policy covers it).
    public func topicHasHistory(_ destination: String) -> Bool {
        self.roomHost.policies.coversTopics && self.roomHost.topicHasHistory(destination)
    }
}
