/// A destination pattern of a configuration `[[policy]]` table: a prefix such as `/queue/` or `/topic/` followed by
/// `.`-separated words, where `*` matches one word and `#` zero or more (as in subscriptions).
public struct DestinationPattern: Sendable, Equatable, CustomStringConvertible {
    public let text: String
    private let prefix: Substring
    private let words: [Substring]

    /// Nil when `text` is not `/<kind>/<words>`.
    public init?(_ text: String) {
        guard text.hasPrefix("/"), let slash = text.dropFirst().firstIndex(of: "/") else { return nil }
        let prefix = text[...slash]
        let rest = text[text.index(after: slash)...]
        guard !rest.isEmpty else { return nil }
        self.text = text
        self.prefix = prefix
        self.words = rest.split(separator: ".", omittingEmptySubsequences: false)
    }

    public var description: String { self.text }

    public func matches(_ destination: String) -> Bool {
        guard destination.hasPrefix(self.prefix) else { return false }
        let words = destination.dropFirst(self.prefix.count).split(separator: ".", omittingEmptySubsequences: false)
        return Self.match(self.words[...], words[...])
    }

    private static func match(_ pattern: ArraySlice<Substring>, _ words: ArraySlice<Substring>) -> Bool {
        guard let first = pattern.first else { return words.isEmpty }
        if first == "#" {
            let rest = pattern.dropFirst()
            // `#` takes zero or more words: try every split.
            for skip in 0...words.count where Self.match(rest, words.dropFirst(skip)) { return true }
            return false
        }
        guard let word = words.first, first == "*" || first == word else { return false }
        return Self.match(pattern.dropFirst(), words.dropFirst())
    }
}

/// Policies of the configuration for one kind of destination: `[[policy]]` tables whose pattern matches, first
/// match wins, over the defaults (the top-level settings).
public struct PolicyRules<Policy: Sendable>: Sendable {
    public var defaultPolicy: Policy
    public var rules: [(pattern: DestinationPattern, policy: Policy)]

    public init(defaultPolicy: Policy, rules: [(pattern: DestinationPattern, policy: Policy)] = []) {
        self.defaultPolicy = defaultPolicy
        self.rules = rules
    }

    public func policy(for destination: String) -> Policy {
        self.rules.first { $0.pattern.matches(destination) }?.policy ?? self.defaultPolicy
    }
}

public typealias QueuePolicies = PolicyRules<QueuePolicy>

extension PolicyRules where Policy == QueuePolicy {
    public init() { self.init(defaultPolicy: QueuePolicy()) }
}
