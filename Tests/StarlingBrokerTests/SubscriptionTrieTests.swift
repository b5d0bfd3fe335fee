import Testing
@testable import StarlingBroker

final class Entry: SubscriptionTrieValue, CustomStringConvertible {
    let name: String
    var matchStamp: UInt64 = 0
    init(_ name: String) { self.name = name }
    var description: String { self.name }
}

private func words(_ name: String) -> [Substring] {
    name.split(separator: ".", omittingEmptySubsequences: false)
}

@Suite("SubscriptionTrie")
struct SubscriptionTrieTests {
    private func matches(_ patterns: [String], _ destination: String) -> [String] {
        var trie = SubscriptionTrie<Entry>()
        for pattern in patterns { trie.insert(words(pattern), Entry(pattern)) }
        var result: [Entry] = []
        trie.match(words(destination), into: &result)
        return result.map(\.name).sorted()
    }

    @Test("An exact pattern matches only the same name.")
    func exact() {
        #expect(self.matches(["a.b", "a.c", "a"], "a.b") == ["a.b"])
        #expect(self.matches(["a.b"], "a.b.c") == [])
        #expect(self.matches(["a.b"], "a") == [])
    }

    @Test("'*' matches exactly one word.")
    func star() {
        #expect(self.matches(["a.*", "*.b", "*", "a.*.c"], "a.b") == ["*.b", "a.*"])
        #expect(self.matches(["a.*"], "a") == [])
        #expect(self.matches(["a.*"], "a.b.c") == [])
        #expect(self.matches(["a.*.c"], "a.x.c") == ["a.*.c"])
    }

    @Test("'#' matches zero or more words, anywhere in the pattern.")
    func hash() {
        #expect(self.matches(["a.#"], "a") == ["a.#"])
        #expect(self.matches(["a.#"], "a.b.c.d") == ["a.#"])
        #expect(self.matches(["#"], "x.y") == ["#"])
        #expect(self.matches(["#.z"], "z") == ["#.z"])
        #expect(self.matches(["#.z"], "x.y.z") == ["#.z"])
        #expect(self.matches(["a.#.z"], "a.z") == ["a.#.z"])
        #expect(self.matches(["a.#.z"], "a.b.c.z") == ["a.#.z"])
        #expect(self.matches(["a.#.z"], "a.b.c") == [])
        #expect(self.matches(["b.#"], "a.b") == [])
    }

    @Test("A pattern that matches one name in several ways is returned once.")
    func noDuplicates() {
        #expect(self.matches(["a.#.#", "#.#.#", "a.*.#"], "a.b.c") == ["#.#.#", "a.#.#", "a.*.#"])
        var trie = SubscriptionTrie<Entry>()
        let entry = Entry("x")
        trie.insert(words("#.b.#"), entry)
        var result: [Entry] = []
        trie.match(words("b.b.b"), into: &result)
        trie.match(words("b.b.b"), into: &result)
        #expect(result.count == 2)  // once per match call
    }

    @Test("Removing an entry stops it matching, keeps the others, and reports unknown entries.")
    func remove() {
        var trie = SubscriptionTrie<Entry>()
        let first = Entry("1"), second = Entry("2")
        trie.insert(words("a.*"), first)
        trie.insert(words("a.*"), second)
        #expect(trie.count == 2)
        let removed = trie.remove(words("a.*"), first)
        let removedAgain = trie.remove(words("a.*"), first)
        let removedUnknown = trie.remove(words("q.r"), second)
        #expect(removed)
        #expect(!removedAgain)
        #expect(!removedUnknown)
        var result: [Entry] = []
        trie.match(words("a.b"), into: &result)
        #expect(result.map(\.name) == ["2"])
        let removedLast = trie.remove(words("a.*"), second)
        #expect(removedLast)
        #expect(trie.count == 0)
        result = []
        trie.match(words("a.b"), into: &result)
        #expect(result.isEmpty)
    }
}

@Suite("TopicName")
struct TopicNameTests {
    @Test("Publish destinations split into words and refuse wildcards.")
    func publish() throws {
        #expect(try TopicName.publishWords("/topic/prices.eu.fr") == ["prices", "eu", "fr"])
        #expect(throws: TopicName.ValidationError.wildcardInPublish("/topic/a.*")) { try TopicName.publishWords("/topic/a.*") }
        #expect(throws: TopicName.ValidationError.emptyName) { try TopicName.publishWords("/topic/") }
        #expect(throws: TopicName.ValidationError.notATopic("/queue/a")) { try TopicName.publishWords("/queue/a") }
        #expect(throws: TopicName.ValidationError.tooLong(limit: TopicName.maxLength)) {
            try TopicName.publishWords("/topic/" + String(repeating: "x", count: TopicName.maxLength))
        }
    }

    @Test("Subscription patterns keep their wildcards.")
    func pattern() throws {
        #expect(try TopicName.patternWords("/topic/a.*.#") == ["a", "*", "#"])
    }
}
