/// Topic destinations and subscription patterns.
///
/// A topic destination is `/topic/<name>` where `<name>` is a `.`-separated list of words (as RabbitMQ and
/// Artemis route them). A subscription pattern may use two wildcard words:
/// - `*` matches exactly one word;
/// - `#` matches zero or more words.
/// A SEND destination must not contain wildcards: publishing to a pattern is ambiguous, so it is an error.
public enum TopicName {
    public static let prefix = "/topic/"

    public enum ValidationError: Error, Equatable, Sendable, CustomStringConvertible {
        case notATopic(String)
        case emptyName
        case wildcardInPublish(String)
        case tooLong(limit: Int)
        case controlCharacter(String)

        public var description: String {
            switch self {
            case .notATopic(let destination): "'\(destination)' is not a /topic/ destination"
            case .emptyName: "the topic name is empty"
            case .wildcardInPublish(let destination):
                "'\(destination)' contains a wildcard ('*' or '#'); wildcards are allowed only when subscribing"
            case .tooLong(let limit): "the destination is longer than \(limit) bytes"
            case .controlCharacter(let destination): "'\(destination)' contains a control character"
            }
        }
    }

    /// Longest destination accepted (bytes of UTF-8).
    public static let maxLength = 1024

    /// The words of a topic destination used for publishing, e.g. `/topic/prices.eu.fr` -> `["prices","eu","fr"]`.
    public static func publishWords(_ destination: String) throws(ValidationError) -> [Substring] {
        let words = try self.words(destination)
        if words.contains(where: { $0 == "*" || $0 == "#" }) {
            throw .wildcardInPublish(destination)
        }
        return words
    }

    /// The words of a subscription pattern (wildcards allowed).
    public static func patternWords(_ destination: String) throws(ValidationError) -> [Substring] {
        try self.words(destination)
    }

    private static func words(_ destination: String) throws(ValidationError) -> [Substring] {
        guard destination.hasPrefix(prefix) else { throw .notATopic(destination) }
        guard destination.utf8.count <= maxLength else { throw .tooLong(limit: maxLength) }
        let name = destination.dropFirst(prefix.count)
        guard !name.isEmpty else { throw .emptyName }
        guard !name.utf8.contains(where: { $0 < 0x20 || $0 == 0x7F }) else { throw .controlCharacter(destination) }
        return name.split(separator: ".", omittingEmptySubsequences: false)
    }

    /// True when `pattern` has a wildcard word.
    public static func isWildcard(_ words: [Substring]) -> Bool {
        words.contains { $0 == "*" || $0 == "#" }
    }
}
