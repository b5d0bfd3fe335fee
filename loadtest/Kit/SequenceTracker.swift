/// Follows one stream of sequence numbers (one publisher to one destination, as seen by one subscription)
/// and classifies every arrival.
///
/// Publishers number their messages 0, 1, 2, ... per destination. Arrivals are judged against the highest
/// number seen so far and the gaps below it:
/// - `seq == highest + 1`: in order.
/// - `seq > highest + 1`: in order, but `highest+1 ..< seq` are missing (lost, unless they arrive later).
/// - `seq` inside a gap: late, i.e. out of order; it is no longer missing.
/// - anything else (`seq <= highest` and not missing): a duplicate.
///
/// Gaps are kept as sorted half-open ranges, so a healthy stream costs no memory and a lossy one costs one
/// range per burst of loss, not one entry per lost message.
public struct SequenceTracker: Sendable, Equatable {
    public enum Outcome: Sendable, Equatable {
        case inOrder
        /// In order after skipping `skipped` numbers (possibly lost).
        case gap(skipped: UInt64)
        case late
        case duplicate
    }

    /// One more than the highest sequence number seen (0 = nothing seen yet).
    public private(set) var nextExpected: UInt64 = 0
    /// Missing numbers below `nextExpected`, sorted, non-overlapping, non-empty ranges.
    public private(set) var missing: [Range<UInt64>] = []
    public private(set) var received: UInt64 = 0
    public private(set) var duplicates: UInt64 = 0
    public private(set) var outOfOrder: UInt64 = 0

    public init() {}

    /// Distinct sequence numbers received.
    public var unique: UInt64 { self.received - self.duplicates }

    /// Numbers below the highest seen that never arrived.
    public var missingCount: UInt64 { self.missing.reduce(0) { $0 + UInt64($1.count) } }

    @discardableResult
    public mutating func record(_ seq: UInt64) -> Outcome {
        self.received += 1
        if seq == self.nextExpected {
            self.nextExpected = seq + 1
            return .inOrder
        }
        if seq > self.nextExpected {
            let skipped = seq - self.nextExpected
            self.missing.append(self.nextExpected..<seq)
            self.nextExpected = seq + 1
            return .gap(skipped: skipped)
        }
        // seq < nextExpected: late if it fills a gap, else a duplicate.
        guard let index = self.gapIndex(containing: seq) else {
            self.duplicates += 1
            return .duplicate
        }
        let range = self.missing[index]
        if range.count == 1 {
            self.missing.remove(at: index)
        } else if seq == range.lowerBound {
            self.missing[index] = (seq + 1)..<range.upperBound
        } else if seq == range.upperBound - 1 {
            self.missing[index] = range.lowerBound..<seq
        } else {
            self.missing[index] = range.lowerBound..<seq
            self.missing.insert((seq + 1)..<range.upperBound, at: index + 1)
        }
        self.outOfOrder += 1
        return .late
    }

    /// Binary search over the sorted gaps.
    private func gapIndex(containing seq: UInt64) -> Int? {
        var low = 0
        var high = self.missing.count
        while low < high {
            let middle = (low + high) / 2
            let range = self.missing[middle]
            if seq < range.lowerBound {
                high = middle
            } else if seq >= range.upperBound {
                low = middle + 1
            } else {
                return middle
            }
        }
        return nil
    }
}
