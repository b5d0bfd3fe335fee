/// `/room/<name>` and `/presence/<name>` destinations (docs/rooms.md), and how the loops route them.
///
/// Room traffic goes through the topic index under words no topic can have (the first word holds a NUL, which
/// topic names may not contain), so rooms reuse the per-loop fan-out of topics.
public enum RoomName {
    public static let roomPrefix = "/room/"
    public static let presencePrefix = "/presence/"
    /// The route of a presence feed's count-only subscribers (not a destination a client can name).
    static let countPrefix = "/presence-count/"
    public static let maxNameLength = 200

    /// `<name>` of `/room/<name>` or `/presence/<name>`, nil for other destinations.
    public static func name(of destination: String) -> Substring? {
        if destination.hasPrefix(Self.roomPrefix) { return destination.dropFirst(Self.roomPrefix.count) }
        if destination.hasPrefix(Self.presencePrefix) { return destination.dropFirst(Self.presencePrefix.count) }
        return nil
    }

    /// Why `destination` is not a usable room or presence destination, or nil.
    public static func problem(_ destination: String) -> String? {
        guard let name = Self.name(of: destination) else { return "not a /room/ or /presence/ destination" }
        if name.isEmpty { return "the room name is empty" }
        if name.utf8.count > Self.maxNameLength { return "the room name is longer than \(Self.maxNameLength) bytes" }
        for byte in name.utf8 {
            if byte < 0x20 || byte == 0x7F { return "the room name contains a control character" }
            if byte == UInt8(ascii: "/") { return "the room name contains '/'" }
            if byte == UInt8(ascii: "*") || byte == UInt8(ascii: "#") {
                return "the room name contains a wildcard ('*' or '#'); rooms are joined by exact name"
            }
        }
        return nil
    }

    public enum Feed: Sendable {
        case room, presence, presenceCount

        var prefix: String {
            switch self {
            case .room: RoomName.roomPrefix
            case .presence: RoomName.presencePrefix
            case .presenceCount: RoomName.countPrefix
            }
        }

        var marker: Substring {
            switch self {
            case .room: "\u{0}room"
            case .presence: "\u{0}presence"
            case .presenceCount: "\u{0}presence-count"
            }
        }
    }

    /// The subscription-index words of a room's feed.
    public static func words(_ feed: Feed, room: Substring) -> [Substring] {
        [feed.marker, room]
    }

    /// The route (see `BrokerMessage.route`) of a room's feed.
    public static func route(_ feed: Feed, room: Substring) -> String {
        feed.prefix + room
    }

    /// The index words of a route made by `route(_:room:)`, nil for other routes.
    static func routingWords(_ route: String) -> [Substring]? {
        for feed in [Feed.room, .presence, .presenceCount] where route.hasPrefix(feed.prefix) {
            return Self.words(feed, room: route.dropFirst(feed.prefix.count))
        }
        return nil
    }
}

/// Limits of rooms that are not per-destination policies.
public struct RoomLimits: Sendable, Equatable {
    /// Bytes (keys and values) of a connection's presence metadata, and of a member's.
    public var maxMetaBytes = 1024

    public init(maxMetaBytes: Int = 1024) {
        self.maxMetaBytes = maxMetaBytes
    }

    /// Bytes of presence metadata as the limit counts them: its keys and values.
    public static func size(of meta: [String: String]) -> Int {
        meta.reduce(0) { $0 + $1.key.utf8.count + $1.value.utf8.count }
    }
}

/// How a room, or a topic with history, keeps its messages (a `[[policy]]` table matching `/room/...` or
/// `/topic/...`).
public struct HistoryPolicy: Sendable, Equatable {
    /// Messages kept for `x-history` and `x-resume-from`.
    public var history = 100
    /// How long a kept message stays (ms); nil = until newer ones push it out.
    public var historyTTL: Int64? = 86_400_000
    /// Encoded bytes kept at most (the newest message is kept whatever its size): memory per room stays bounded
    /// even with large messages.
    public var historyMaxBytes = 1 << 20
    /// A topic's last value: every SUBSCRIBE matching it (wildcards included) first gets its newest message,
    /// marked `x-snapshot:true` (issue 8). Implies keeping at least one message.
    public var lastValue = false

    public init() {}
}

/// The history policies of the configuration: `[[policy]]` tables for `/room/` and `/topic/` patterns, first match
/// wins. A room no table matches follows the top-level `room-history` settings; a topic no table matches keeps no
/// history (and its messages carry no offsets).
public struct HistoryPolicies: Sendable {
    public var roomDefault: HistoryPolicy
    public var rules: [(pattern: DestinationPattern, policy: HistoryPolicy)]
    /// Some table gives topics a history: only then do topic SENDs need a look-up.
    public let coversTopics: Bool
    /// Some table gives topics a last value: only then do topic SUBSCRIBEs ask the loops for snapshots.
    public let coversLastValues: Bool

    public init(roomDefault: HistoryPolicy = HistoryPolicy(), rules: [(pattern: DestinationPattern, policy: HistoryPolicy)] = []) {
        self.roomDefault = roomDefault
        self.rules = rules.map { rule in
            var policy = rule.policy
            if policy.lastValue { policy.history = max(policy.history, 1) }
            return (rule.pattern, policy)
        }
        self.coversTopics = self.rules.contains { $0.pattern.text.hasPrefix(TopicName.prefix) && $0.policy.history > 0 }
        self.coversLastValues = self.rules.contains { $0.pattern.text.hasPrefix(TopicName.prefix) && $0.policy.lastValue }
    }

    /// The policy of a room or topic stream; nil for a topic without history.
    public func policy(for destination: String) -> HistoryPolicy? {
        if let rule = self.rules.first(where: { $0.pattern.matches(destination) }) {
            return rule.policy.history > 0 || destination.hasPrefix(RoomName.roomPrefix) ? rule.policy : nil
        }
        return destination.hasPrefix(RoomName.roomPrefix) ? self.roomDefault : nil
    }
}
