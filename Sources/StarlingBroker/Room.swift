/// One room's state on its owning loop (docs/rooms.md): its stream of messages (offsets, epoch, the kept history)
/// and its members. A topic with history is a room without members. Pure bookkeeping; `RoomHost` does the
/// messaging around it, on the room's loop only.
final class Room: @unchecked Sendable {
    /// The room's or topic's destination (`/room/<name>`, `/topic/<name>`).
    let stream: String
    /// `<name>` of a `/room/<name>` (its presence feed is `/presence/<name>`).
    var name: Substring { self.stream.dropFirst(RoomName.roomPrefix.count) }
    /// Identifies this stream: offsets are comparable only within one epoch.
    let epoch: String
    var policy: HistoryPolicy
    /// The offset of the newest message (0: none yet).
    private(set) var lastOffset: UInt64 = 0
    private var history = HistoryRing()
    /// Members by user, and which user each connection (session and subscription) belongs to.
    private(set) var members: [String: Member] = [:]
    private var users: [ConnectionKey: String] = [:]
    /// The count last sent to count-only presence subscribers (-1: none yet), and whether a send is scheduled.
    var lastPublishedCount = -1
    var countPublishScheduled = false

    struct ConnectionKey: Hashable {
        var session: String
        var subscription: String
    }

    struct Member {
        /// Each connection's metadata.
        var connections: [ConnectionKey: [String: String]] = [:]
        /// The metadata of the most recent join or update.
        var meta: [String: String] = [:]
    }

    /// What a membership change means for the presence feed.
    enum PresenceChange: Equatable {
        case join(user: String)
        case leave(user: String)
        case update(user: String)
    }

    init(stream: String, epoch: String, policy: HistoryPolicy) {
        self.stream = stream
        self.epoch = epoch
        self.policy = policy
    }

    /// Messages kept for history and resume.
    var keptCount: Int { self.history.count }

    /// True when the room holds nothing worth keeping: no member and no kept message.
    var isEmpty: Bool { self.members.isEmpty && self.history.isEmpty }

    // MARK: stream

    /// The offset the next message gets.
    func nextOffset() -> UInt64 {
        self.lastOffset += 1
        return self.lastOffset
    }

    /// Keeps `message` (whose offset is `lastOffset`) for history and resume. Returns false when the policy keeps
    /// nothing.
    @discardableResult
    func keep(_ message: BrokerMessage, now: Int64) -> Bool {
        guard self.policy.history > 0 else { return false }
        self.history.append(message, at: now, capacity: self.policy.history, maxBytes: self.policy.historyMaxBytes)
        return true
    }

    /// Puts back a message kept before a restart (in offset order).
    func restore(_ message: BrokerMessage, keptAt: Int64) {
        self.lastOffset = max(self.lastOffset, message.offset)
        _ = self.keep(message, now: keptAt)
    }

    /// The offset of the oldest kept message (nil: none kept).
    var oldestKeptOffset: UInt64? {
        self.history.isEmpty ? nil : self.lastOffset - UInt64(self.history.count) + 1
    }

    /// Drops kept messages older than the policy's TTL. Returns the offset of the newest one dropped, if any.
    @discardableResult
    func expire(now: Int64) -> UInt64? {
        guard let ttl = self.policy.historyTTL, ttl > 0, let before = self.oldestKeptOffset else { return nil }
        self.history.dropOlder(than: now - ttl)
        let after = self.oldestKeptOffset ?? self.lastOffset + 1
        return after > before ? after - 1 : nil
    }

    /// The last `count` kept messages, oldest first.
    func last(_ count: Int) -> [BrokerMessage] {
        self.history.last(count)
    }

    /// Every message after `offset` of stream `epoch`, oldest first; nil when some of them are no longer kept (or
    /// the epoch is another one, or the offset is in the future): the client cannot be brought up to date.
    func messages(after offset: UInt64, epoch: String) -> [BrokerMessage]? {
        guard epoch == self.epoch, offset <= self.lastOffset else { return nil }
        let missed = Int(self.lastOffset - offset)
        guard missed <= self.history.count else { return nil }
        return self.history.last(missed)
    }

    // MARK: members

    /// A connection joins as `user` with `meta`. Returns `.join` when it is the user's first connection, `.update`
    /// when another connection of the user brings other metadata (it becomes the member's).
    func join(_ key: ConnectionKey, user: String, meta: [String: String]) -> PresenceChange? {
        if let previous = self.users[key], previous != user { _ = self.leave(key) }
        self.users[key] = user
        guard var member = self.members[user] else {
            self.members[user] = Member(connections: [key: meta], meta: meta)
            return .join(user: user)
        }
        member.connections[key] = meta
        let changed = member.meta != meta
        member.meta = meta
        self.members[user] = member
        return changed ? .update(user: user) : nil
    }

    /// A connection leaves. Returns `.leave` when it was its user's last one.
    func leave(_ key: ConnectionKey) -> PresenceChange? {
        guard let user = self.users.removeValue(forKey: key), var member = self.members[user] else { return nil }
        member.connections[key] = nil
        if member.connections.isEmpty {
            self.members[user] = nil
            return .leave(user: user)
        }
        self.members[user] = member
        return nil
    }

    enum UpdateResult: Equatable {
        /// The users whose metadata changed (none when the update changed nothing).
        case updated([String])
        case notMember
        /// The merged metadata would be larger than allowed: nothing was changed.
        case tooLarge
    }

    /// Merges `changes` (an empty value removes the key) into the metadata of every connection of `session`, and
    /// into its user's, unless a result would exceed `maxMetaBytes` (keys and values).
    func update(session: String, changes: [(key: String, value: String)], maxMetaBytes: Int = .max) -> UpdateResult {
        let keys = self.users.filter { $0.key.session == session }
        guard !keys.isEmpty else { return .notMember }
        for (key, user) in keys {
            guard let member = self.members[user], let meta = member.connections[key] else { continue }
            if RoomLimits.size(of: Self.merge(changes, into: meta)) > maxMetaBytes
                || RoomLimits.size(of: Self.merge(changes, into: member.meta)) > maxMetaBytes {
                return .tooLarge
            }
        }
        var changed: [String] = []
        for (key, user) in keys {
            guard var member = self.members[user], let meta = member.connections[key] else { continue }
            member.connections[key] = Self.merge(changes, into: meta)
            let merged = Self.merge(changes, into: member.meta)
            if merged != member.meta {
                member.meta = merged
                changed.append(user)
            }
            self.members[user] = member
        }
        return .updated(changed)
    }

    private static func merge(_ changes: [(key: String, value: String)], into meta: [String: String]) -> [String: String] {
        var meta = meta
        for (name, value) in changes { meta[name] = value.isEmpty ? nil : value }
        return meta
    }

    // MARK: presence JSON

    /// `{"count":N,"members":{...}}`, or `{"count":N}` for count-only subscribers.
    func stateJSON(countOnly: Bool) -> String {
        guard !countOnly else { return "{\"count\":\(self.members.count)}" }
        var json = "{\"count\":\(self.members.count),\"members\":{"
        for (index, user) in self.members.keys.sorted().enumerated() {
            if index > 0 { json += "," }
            self.appendMember(user, to: &json)
        }
        return json + "}}"
    }

    /// `{"count":N,"joins":{...},"leaves":{...},"updates":{...}}` for one change.
    func diffJSON(_ change: PresenceChange) -> String {
        var joins = "", leaves = "", updates = ""
        switch change {
        case .join(let user): self.appendMember(user, to: &joins)
        case .leave(let user): leaves = JSON.string(user) + ":{\"connections\":0,\"meta\":{}}"
        case .update(let user): self.appendMember(user, to: &updates)
        }
        return "{\"count\":\(self.members.count),\"joins\":{\(joins)},\"leaves\":{\(leaves)},\"updates\":{\(updates)}}"
    }

    private func appendMember(_ user: String, to json: inout String) {
        let member = self.members[user] ?? Member()
        json += JSON.string(user) + ":{\"connections\":\(member.connections.count),\"meta\":" + JSON.object(member.meta) + "}"
    }
}

/// The kept messages of a room, oldest first, with the time each was kept: at most `capacity` of them and, past
/// the newest one, at most `maxBytes` of encoded MESSAGE parts.
struct HistoryRing {
    private var messages: [BrokerMessage] = []
    private var times: [Int64] = []
    /// Index of the oldest entry still kept; the ones before it are dropped (compacted away in bulk).
    private var first = 0
    private(set) var bytes = 0

    var count: Int { self.messages.count - self.first }
    var isEmpty: Bool { self.count == 0 }

    mutating func append(_ message: BrokerMessage, at time: Int64, capacity: Int, maxBytes: Int) {
        self.messages.append(message)
        self.times.append(time)
        self.bytes += message.sharedSize
        while self.count > capacity || (self.bytes > maxBytes && self.count > 1) { self.dropOldest() }
    }

    /// The newest `count` entries (or all), oldest first.
    func last(_ count: Int) -> [BrokerMessage] {
        let take = min(max(count, 0), self.count)
        return Array(self.messages[(self.messages.count - take)...])
    }

    /// Drops entries kept before `time`.
    mutating func dropOlder(than time: Int64) {
        while !self.isEmpty, self.times[self.first] < time { self.dropOldest() }
    }

    private mutating func dropOldest() {
        self.bytes -= self.messages[self.first].sharedSize
        self.first += 1
        if self.first >= 32, self.first * 2 >= self.messages.count {
            self.messages.removeFirst(self.first)
            self.times.removeFirst(self.first)
            self.first = 0
        }
    }
}

/// Just enough JSON writing for presence bodies (and the server's JSON log lines).
public enum JSON {
    /// A JSON string literal (RFC 8259 §7: quote, backslash and control characters escaped).
    public static func string(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }

    /// An object of string values, keys sorted.
    static func object(_ values: [String: String]) -> String {
        "{" + values.keys.sorted().map { Self.string($0) + ":" + Self.string(values[$0]!) }.joined(separator: ",") + "}"
    }
}
