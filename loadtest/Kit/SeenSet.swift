/// A growable bit set of sequence numbers: which messages of one (producer, queue) stream arrived anywhere.
///
/// Queue consumers compete, so no single consumer sees a whole stream; each event loop keeps one `SeenSet`
/// per stream and the sets are merged at the end. A number set twice is a duplicate, whether both arrivals
/// were on one loop (`insert` returns false) or on two (`merge` returns the overlap).
public struct SeenSet: Sendable, Equatable {
    private var words: [UInt64] = []
    public private(set) var count: Int = 0

    public init() {}

    /// Adds `seq`; false when it was already there.
    @inline(__always)
    public mutating func insert(_ seq: UInt64) -> Bool {
        let word = Int(seq >> 6)
        let bit = UInt64(1) << (seq & 63)
        if word >= self.words.count {
            self.words.append(contentsOf: repeatElement(0, count: max(word + 1 - self.words.count, self.words.count)))
        }
        if self.words[word] & bit != 0 { return false }
        self.words[word] |= bit
        self.count += 1
        return true
    }

    public func contains(_ seq: UInt64) -> Bool {
        let word = Int(seq >> 6)
        return word < self.words.count && self.words[word] & (UInt64(1) << (seq & 63)) != 0
    }

    /// Unions `other` into `self`; returns how many numbers were in both (duplicates across the two sets).
    @discardableResult
    public mutating func merge(_ other: SeenSet) -> Int {
        if other.words.count > self.words.count {
            self.words.append(contentsOf: repeatElement(0, count: other.words.count - self.words.count))
        }
        var overlap = 0
        for index in other.words.indices {
            let both = self.words[index] & other.words[index]
            overlap += both.nonzeroBitCount
            self.words[index] |= other.words[index]
        }
        self.count += other.count - overlap
        return overlap
    }

    public static func == (lhs: SeenSet, rhs: SeenSet) -> Bool {
        let n = max(lhs.words.count, rhs.words.count)
        for index in 0..<n {
            let a = index < lhs.words.count ? lhs.words[index] : 0
            let b = index < rhs.words.count ? rhs.words[index] : 0
            if a != b { return false }
        }
        return true
    }
}
