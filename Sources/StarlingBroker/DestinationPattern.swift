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

    /// True when every destination `other` (a subscription pattern, wildcards included) matches, this matches too.
    /// Conservative: false when unsure, e.g. a `#` in `other` against anything but a `#` here.
    public func covers(_ other: DestinationPattern) -> Bool {
        guard self.prefix == other.prefix else { return false }
        return Self.relate(self.words, other.words, covering: true)
    }

    /// True when some destination matches both.
    public func overlaps(_ other: DestinationPattern) -> Bool {
        guard self.prefix == other.prefix else { return false }
        return Self.relate(self.words, other.words, covering: false)
    }

    /// `covers` and `overlaps` by dynamic programming over (position in `p`, position in `q`): O(|p| x |q|) even
    /// for patterns full of `#` (a subscription's pattern comes from a client).
    private static func relate(_ p: [Substring], _ q: [Substring], covering: Bool) -> Bool {
        // result[i][j]: the relation between p[i...] and q[j...]; filled from the ends.
        var result = Array(repeating: Array(repeating: false, count: q.count + 1), count: p.count + 1)
        for i in stride(from: p.count, through: 0, by: -1) {
            for j in stride(from: q.count, through: 0, by: -1) {
                let pEnd = i == p.count
                let qEnd = j == q.count
                let value: Bool
                if pEnd && qEnd {
                    value = true
                } else if qEnd {
                    value = p[i] == "#" && result[i + 1][j]
                } else if pEnd {
                    // Nothing left here: covering needs q to match only the empty rest (it never does: false); overlapping
                    // needs q's rest to match empty.
                    value = !covering && q[j] == "#" && result[i][j + 1]
                } else if p[i] == "#" {
                    // `#` here takes nothing, or takes q's next word (whatever it is) and stays.
                    value = result[i + 1][j] || result[i][j + 1] || (!covering && q[j] == "#" && result[i + 1][j])
                } else if q[j] == "#" {
                    // Covering: a fixed word here cannot answer every length `#` there. Overlapping: `#` takes nothing or p's word.
                    value = !covering && (result[i][j + 1] || result[i + 1][j])
                } else if covering {
                    value = (p[i] == "*" || p[i] == q[j]) && result[i + 1][j + 1]
                } else {
                    value = (p[i] == "*" || q[j] == "*" || p[i] == q[j]) && result[i + 1][j + 1]
                }
                result[i][j] = value
            }
        }
        return result[0][0]
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
