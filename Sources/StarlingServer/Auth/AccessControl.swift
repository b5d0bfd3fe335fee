import StarlingBroker

/// One `[[acl]]` table (issue 9): who may SUBSCRIBE to and SEND to the destinations `match` covers.
///
/// ```toml
/// [[acl]]
/// match = "/topic/prices.#"
/// subscribe = "*"                 # any session
/// send = "role:feed, alice"       # users with role feed, and user alice
/// ```
/// A key left out allows nobody.
public struct AccessRule: Sendable {
    public enum Principal: Hashable, Sendable {
        case anyone
        case user(String)
        case role(String)
    }

    public var pattern: DestinationPattern
    public var subscribe: Set<Principal> = []
    public var send: Set<Principal> = []

    public init(pattern: DestinationPattern, subscribe: Set<Principal> = [], send: Set<Principal> = []) {
        self.pattern = pattern
        self.subscribe = subscribe
        self.send = send
    }

    init(_ table: ConfigFile.Table) throws(ServerConfiguration.SettingError) {
        guard let match = table.entries.first(where: { $0.key == "match" }) else {
            throw .init("\(table.location): [[acl]] needs a 'match' destination pattern")
        }
        guard let pattern = DestinationPattern(match.value) else {
            throw .init("\(match.location): match: expected a destination pattern such as \"/topic/prices.#\", got '\(match.value)'")
        }
        self.pattern = pattern
        for entry in table.entries where entry.key != "match" {
            var principals: Set<Principal> = []
            for item in entry.value.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !item.isEmpty {
                if item == "*" {
                    principals.insert(.anyone)
                } else if item.hasPrefix("role:"), item.count > 5 {
                    principals.insert(.role(String(item.dropFirst(5))))
                } else {
                    principals.insert(.user(item.hasPrefix("user:") ? String(item.dropFirst(5)) : item))
                }
            }
            switch entry.key {
            case "subscribe": self.subscribe = principals
            case "send": self.send = principals
            default: throw .init("\(entry.location): unknown [[acl]] key '\(entry.key)' (expected match, subscribe, send)")
            }
        }
    }
}

/// The access rules of a server: the first `[[acl]]` table whose pattern concerns a destination decides; a
/// destination no table concerns is denied. Without tables everything is allowed.
struct AccessControl: Sendable {
    enum Operation: String {
        case subscribe
        case send
    }

    let rules: [AccessRule]

    /// Whether `user` (with `roles`) may do `operation` on `destination` (for a SUBSCRIBE, a pattern that may hold
    /// wildcards: the deciding table must cover all it can match, so a wildcard never reaches past what is allowed).
    func allows(_ operation: Operation, _ destination: String, user: String?, roles: [String]) -> Bool {
        guard let destination = Self.governed(destination, operation), let pattern = DestinationPattern(destination) else { return true }
        guard let rule = self.rules.first(where: { $0.pattern.overlaps(pattern) }) else { return false }
        guard operation == .send || rule.pattern.covers(pattern) else { return false }
        let principals = operation == .subscribe ? rule.subscribe : rule.send
        if principals.contains(.anyone) { return true }
        if let user, !user.isEmpty, principals.contains(.user(user)) { return true }
        return roles.contains { principals.contains(.role($0)) }
    }

    /// The destination the rules are asked about; nil for what is always one's own (temporary queues, one's
    /// `/user/` subscriptions). A presence feed is governed by its room.
    private static func governed(_ destination: String, _ operation: Operation) -> String? {
        if destination.hasPrefix(TempQueueName.prefix) || TempQueueName.isTemporary(destination) { return nil }
        if operation == .subscribe, destination.hasPrefix(UserDestination.prefix) { return nil }
        if let name = RoomName.name(of: destination), destination.hasPrefix(RoomName.presencePrefix) { return RoomName.roomPrefix + name }
        return destination
    }
}
