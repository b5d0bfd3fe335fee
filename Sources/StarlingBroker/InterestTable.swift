import Atomics
import NIOConcurrencyHelpers

/// Which event loops have subscribers for which patterns: the one piece of subscription state shared between loops.
///
/// Locking rule (the only lock on the publish path): `lock` guards `trie` and `patterns`. It is taken when a loop
/// gains its first or loses its last subscription to a pattern, and when a loop's cache misses. `generation` is
/// bumped (after the change, still under the lock) on every change, so loops can keep a lock-free cache of
/// destination -> loop mask and drop it when the generation moves.
public final class InterestTable: Sendable {
    final class Interest: SubscriptionTrieValue {
        var matchStamp: UInt64 = 0
        var loopCounts: [Int]
        init(loops: Int) { self.loopCounts = Array(repeating: 0, count: loops) }
        var mask: UInt64 {
            var mask: UInt64 = 0
            for (index, count) in self.loopCounts.enumerated() where count > 0 { mask |= 1 << UInt64(index) }
            return mask
        }
    }

    // Only touched under `state`'s lock.
    private struct State: @unchecked Sendable {
        var trie = SubscriptionTrie<Interest>()
        var patterns: [String: Interest] = [:]
        var scratch: [Interest] = []
    }

    private let state: NIOLockedValueBox<State>
    private let generationCounter = ManagedAtomic<UInt64>(0)
    public let loopCount: Int

    public init(loopCount: Int) {
        precondition(loopCount > 0 && loopCount <= 64, "InterestTable supports 1...64 event loops")
        self.loopCount = loopCount
        self.state = NIOLockedValueBox(State())
    }

    public var generation: UInt64 { self.generationCounter.load(ordering: .acquiring) }

    /// Loop `loop` has its first subscription to `pattern`.
    public func add(pattern: String, words: [Substring], loop: Int) {
        self.state.withLockedValue { state in
            let interest: Interest
            if let existing = state.patterns[pattern] {
                interest = existing
            } else {
                interest = Interest(loops: self.loopCount)
                state.patterns[pattern] = interest
                state.trie.insert(words, interest)
            }
            interest.loopCounts[loop] += 1
            self.generationCounter.wrappingIncrement(ordering: .releasing)
        }
    }

    /// Loop `loop` lost its last subscription to `pattern`.
    public func remove(pattern: String, words: [Substring], loop: Int) {
        self.state.withLockedValue { state in
            guard let interest = state.patterns[pattern], interest.loopCounts[loop] > 0 else { return }
            interest.loopCounts[loop] -= 1
            if interest.mask == 0 {
                state.patterns[pattern] = nil
                state.trie.remove(words, interest)
            }
            self.generationCounter.wrappingIncrement(ordering: .releasing)
        }
    }

    /// The loops (bit i = loop i) with at least one subscription matching `words`, and the generation it is valid for.
    public func loops(matching words: [Substring]) -> (mask: UInt64, generation: UInt64) {
        self.state.withLockedValue { state in
            let generation = self.generationCounter.load(ordering: .relaxed)
            state.scratch.removeAll(keepingCapacity: true)
            state.trie.match(words, into: &state.scratch)
            var mask: UInt64 = 0
            for interest in state.scratch { mask |= interest.mask }
            state.scratch.removeAll(keepingCapacity: true)
            return (mask, generation)
        }
    }

    /// Number of distinct patterns with subscribers anywhere (for metrics and tests).
    public var patternCount: Int { self.state.withLockedValue { $0.patterns.count } }
}
