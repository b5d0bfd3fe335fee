import Testing

@testable import StarlingLoadtestKit

@Suite("SequenceTracker")
struct SequenceTrackerTests {
    @Test("A stream that arrives in order is all in order, with nothing missing")
    func inOrder() {
        var tracker = SequenceTracker()
        for seq in 0..<1000 as Range<UInt64> {
            do { let result = tracker.record(seq); #expect(result == .inOrder) }
        }
        #expect(tracker.unique == 1000)
        #expect(tracker.duplicates == 0)
        #expect(tracker.outOfOrder == 0)
        #expect(tracker.missing.isEmpty)
    }

    @Test("A skipped number is missing until it arrives, and then counts as out of order")
    func gapThenLate() {
        var tracker = SequenceTracker()
        do { let result = tracker.record(0); #expect(result == .inOrder) }
        do { let result = tracker.record(3); #expect(result == .gap(skipped: 2)) }
        #expect(tracker.missing == [1..<3])
        #expect(tracker.missingCount == 2)
        do { let result = tracker.record(2); #expect(result == .late) }
        #expect(tracker.missing == [1..<2])
        do { let result = tracker.record(1); #expect(result == .late) }
        #expect(tracker.missing.isEmpty)
        #expect(tracker.outOfOrder == 2)
        #expect(tracker.unique == 4)
    }

    @Test("A late arrival in the middle of a gap splits it in two")
    func splitGap() {
        var tracker = SequenceTracker()
        tracker.record(0)
        tracker.record(10)
        do { let result = tracker.record(5); #expect(result == .late) }
        #expect(tracker.missing == [1..<5, 6..<10])
        do { let result = tracker.record(1); #expect(result == .late) }
        do { let result = tracker.record(9); #expect(result == .late) }
        #expect(tracker.missing == [2..<5, 6..<9])
        #expect(tracker.missingCount == 6)
    }

    @Test("The same number twice is a duplicate, whether it was in order or late")
    func duplicates() {
        var tracker = SequenceTracker()
        tracker.record(0)
        tracker.record(1)
        do { let result = tracker.record(1); #expect(result == .duplicate) }
        do { let result = tracker.record(0); #expect(result == .duplicate) }
        tracker.record(4)
        tracker.record(2)
        do { let result = tracker.record(2); #expect(result == .duplicate) }
        #expect(tracker.duplicates == 3)
        #expect(tracker.received == 7)
        #expect(tracker.unique == 4)  // 0, 1, 4, 2
        #expect(tracker.missing == [3..<4])
    }

    @Test("A stream that starts late (first messages lost) shows them as missing")
    func lostAtStart() {
        var tracker = SequenceTracker()
        do { let result = tracker.record(5); #expect(result == .gap(skipped: 5)) }
        #expect(tracker.missingCount == 5)
    }

    @Test("Lost = expected - unique across a tally, and loss at the tail is caught only by expected")
    func tallyLoss() {
        var tracker = SequenceTracker()
        for seq in [0, 1, 2, 4, 4, 3] as [UInt64] { tracker.record(seq) }
        var tally = VerificationTally()
        tally.delivered = tracker.received
        tally.duplicated = tracker.duplicates
        tally.outOfOrder = tracker.outOfOrder
        // 8 were sent: 5, 6, 7 never arrived (the tail is invisible to the tracker itself).
        #expect(tally.unique == 5)
        #expect(tally.lost(expected: 8) == 3)
        #expect(!tally.passes(expected: 8))
        #expect(tally.duplicated == 1)
        #expect(tally.outOfOrder == 1)
        #expect(tally.lost(expected: 5) == 0)
    }

    @Test("Tallies merge by adding every counter")
    func tallyMerge() {
        var a = VerificationTally()
        a.delivered = 10
        a.duplicated = 1
        var b = VerificationTally()
        b.delivered = 5
        b.outOfOrder = 2
        b.foreign = 3
        a.merge(b)
        #expect(a.delivered == 15)
        #expect(a.duplicated == 1)
        #expect(a.outOfOrder == 2)
        #expect(a.foreign == 3)
        #expect(a.unique == 14)
        #expect(a.passes(expected: 14) == false)  // out of order and duplicated
    }
}

@Suite("SeenSet")
struct SeenSetTests {
    @Test("Inserting a number twice reports the duplicate")
    func insertTwice() {
        var set = SeenSet()
        do { let result = set.insert(3); #expect(result) }
        do { let result = set.insert(1000); #expect(result) }
        do { let result = set.insert(3); #expect(!result) }
        #expect(set.count == 2)
        #expect(set.contains(1000))
        #expect(!set.contains(999))
    }

    @Test("Merging counts numbers present in both sets as duplicates and unions the rest")
    func mergeOverlap() {
        var a = SeenSet()
        var b = SeenSet()
        for seq in 0..<100 as Range<UInt64> { _ = a.insert(seq) }
        for seq in 90..<300 as Range<UInt64> { _ = b.insert(seq) }
        do { let result = a.merge(b); #expect(result == 10) }
        #expect(a.count == 300)
        for seq in 0..<300 as Range<UInt64> { #expect(a.contains(seq)) }
    }

    @Test("Competing consumers that split a stream without overlap merge to the whole stream")
    func competingConsumers() {
        var loops = [SeenSet(), SeenSet()]
        for seq in 0..<1000 as Range<UInt64> { _ = loops[Int(seq % 2)].insert(seq) }
        var merged = SeenSet()
        var duplicates = 0
        for set in loops { duplicates += merged.merge(set) }
        #expect(duplicates == 0)
        #expect(merged.count == 1000)
    }
}
