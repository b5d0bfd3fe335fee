/// A value stored in a `SubscriptionTrie`. The stamp lets one match visit a value once even when a pattern with
/// several `#` words matches the same destination in several ways (e.g. `a.#.#` against `a.b.c`).
public protocol SubscriptionTrieValue: AnyObject {
    var matchStamp: UInt64 { get set }
}

/// A trie of subscription patterns keyed by word, as nats-server's Sublist: matching costs O(words x wildcard
/// branches), independent of the number of subscriptions. Not thread-safe: each owner keeps its own (one per
/// event loop, or one under a lock).
public struct SubscriptionTrie<Value: SubscriptionTrieValue> {
    private final class Node {
        var children: [Substring: Node] = [:]
        var star: Node?
        var hash: Node?
        var values: [Value] = []

        var isEmpty: Bool { self.children.isEmpty && self.star == nil && self.hash == nil && self.values.isEmpty }
    }

    private var root = Node()
    private var stamp: UInt64 = 0
    public private(set) var count = 0

    public init() {}

    public mutating func insert(_ words: [Substring], _ value: Value) {
        var node = self.root
        for word in words {
            switch word {
            case "*":
                if node.star == nil { node.star = Node() }
                node = node.star!
            case "#":
                if node.hash == nil { node.hash = Node() }
                node = node.hash!
            default:
                if let child = node.children[word] {
                    node = child
                } else {
                    let child = Node()
                    node.children[word] = child
                    node = child
                }
            }
        }
        node.values.append(value)
        self.count += 1
    }

    /// Removes `value` (by identity) from `words`' node and prunes empty nodes. Returns false when it was not there.
    @discardableResult
    public mutating func remove(_ words: [Substring], _ value: Value) -> Bool {
        var path: [(Node, Substring)] = []
        var node = self.root
        for word in words {
            let next: Node?
            switch word {
            case "*": next = node.star
            case "#": next = node.hash
            default: next = node.children[word]
            }
            guard let next else { return false }
            path.append((node, word))
            node = next
        }
        guard let index = node.values.firstIndex(where: { $0 === value }) else { return false }
        node.values.remove(at: index)
        self.count -= 1
        // Prune from the leaf up while nodes are empty.
        var child = node
        while let (parent, word) = path.popLast(), child.isEmpty {
            switch word {
            case "*": parent.star = nil
            case "#": parent.hash = nil
            default: parent.children[word] = nil
            }
            child = parent
        }
        return true
    }

    /// Appends every value whose pattern matches the destination `words` to `result`, each once.
    public mutating func match(_ words: [Substring], into result: inout [Value]) {
        self.stamp &+= 1
        Self.match(self.root, words, 0, self.stamp, &result)
    }

    private static func match(_ node: Node, _ words: [Substring], _ index: Int, _ stamp: UInt64, _ result: inout [Value]) {
        if let hash = node.hash {
            // '#' swallows words[index..<j] for every j, including none.
            for next in index...words.count {
                match(hash, words, next, stamp, &result)
            }
        }
        if index == words.count {
            for value in node.values where value.matchStamp != stamp {
                value.matchStamp = stamp
                result.append(value)
            }
            return
        }
        if let child = node.children[words[index]] {
            match(child, words, index + 1, stamp, &result)
        }
        if let star = node.star {
            match(star, words, index + 1, stamp, &result)
        }
    }
}
