/// `/temp-queue/` and `/user/` destinations: how they map onto queues and the subscription index.
public enum TempQueueName {
    public static let prefix = "/temp-queue/"
    /// Temporary queues are ordinary queues under this prefix, named after the owning session, so a reply can be
    /// sent to them from any connection (`reply-to` is rewritten to this form).
    public static let queuePrefix = "/queue/temp."

    /// The queue behind `/temp-queue/<name>` of session `session`.
    public static func queue(session: String, name: Substring) -> String {
        "\(Self.queuePrefix)\(session).\(name)"
    }

    /// True when `destination` is some session's temporary queue.
    public static func isTemporary(_ destination: String) -> Bool {
        destination.hasPrefix(Self.queuePrefix)
    }

    /// True when `destination` is a temporary queue of `session`.
    public static func belongs(_ destination: String, to session: String) -> Bool {
        destination.hasPrefix("\(Self.queuePrefix)\(session).")
    }

    /// Why `destination` is not a usable `/temp-queue/` destination, or nil.
    public static func problem(_ destination: String) -> String? {
        let name = destination.utf8.dropFirst(Self.prefix.utf8.count)
        if name.isEmpty { return "the temporary queue name is empty" }
        return QueueName.problem(QueueName.prefix + String(Substring(name)))
    }
}

/// Direct messages to a user: SEND to `/user/<login>/<rest>`; every session of `<login>` that subscribed to
/// `/user/<rest>` gets a copy (DESIGN.md destinations). Routed through the topic index with words no topic can
/// have (the first word holds a NUL, which topic names may not contain).
public enum UserDestination {
    public static let prefix = "/user/"
    static let marker: Substring = "\u{0}user"

    /// `/user/<login>/<rest>` of a SEND, split; nil when either part is missing.
    public static func sendTarget(_ destination: String) -> (login: Substring, rest: Substring)? {
        guard destination.hasPrefix(Self.prefix) else { return nil }
        let path = destination.dropFirst(Self.prefix.count)
        guard let slash = path.firstIndex(of: "/") else { return nil }
        let login = path[..<slash]
        let rest = path[path.index(after: slash)...]
        guard !login.isEmpty, !rest.isEmpty else { return nil }
        return (login, rest)
    }

    /// `<rest>` of a SUBSCRIBE to `/user/<rest>`; nil when empty.
    public static func subscribeRest(_ destination: String) -> Substring? {
        guard destination.hasPrefix(Self.prefix) else { return nil }
        let rest = destination.dropFirst(Self.prefix.count)
        return rest.isEmpty ? nil : rest
    }

    /// The destination messages for `login`'s `<rest>` are routed under (unique per user).
    public static func routing(login: Substring, rest: Substring) -> String {
        "\(Self.prefix)\(login)/\(rest)"
    }

    /// The subscription-index words of `login`'s `<rest>`.
    public static func words(login: Substring, rest: Substring) -> [Substring] {
        [Self.marker, login, rest]
    }

    /// Why `destination` is not a usable `/user/` destination, or nil.
    public static func problem(_ destination: String, publishing: Bool) -> String? {
        if destination.utf8.count > TopicName.maxLength { return "the destination is longer than \(TopicName.maxLength) bytes" }
        if destination.utf8.contains(where: { $0 < 0x20 || $0 == 0x7F }) { return "the destination contains a control character" }
        if publishing {
            return Self.sendTarget(destination) == nil
                ? "a SEND to a user's destination is /user/<login>/<destination>, e.g. /user/alice/queue/inbox" : nil
        }
        return Self.subscribeRest(destination) == nil
            ? "a SUBSCRIBE to your own user destination is /user/<destination>, e.g. /user/queue/inbox" : nil
    }
}
