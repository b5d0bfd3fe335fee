import Testing

@testable import StarlingLoadtestKit

@Suite("StalledSelection")
struct StalledSelectionTests {
    @Test("P% of the subscribers, rounded to the nearest, stall; the rest are healthy")
    func counts() {
        #expect(StalledSelection(subscribers: 1000, percent: 10).count == 100)
        #expect(StalledSelection(subscribers: 1000, percent: 10).healthy == 900)
        #expect(StalledSelection(subscribers: 100, percent: 0).count == 0)
        #expect(StalledSelection(subscribers: 15, percent: 10).count == 2)  // 1.5 rounds up
        #expect(StalledSelection(subscribers: 14, percent: 10).count == 1)  // 1.4 rounds down
        #expect(StalledSelection(subscribers: 3, percent: 10).count == 0)
        #expect(StalledSelection(subscribers: 10, percent: 100).count == 10)
        #expect(StalledSelection(subscribers: 10, percent: 250).count == 10)
        #expect(StalledSelection(subscribers: 10, percent: -5).count == 0)
    }

    @Test("Exactly `count` ranks stall, evenly spread, and none outside the range")
    func spread() {
        for subscribers in [1, 2, 7, 10, 99, 100, 1000] {
            for percent in [0.0, 1, 5, 10, 33.3, 50, 90, 100] {
                let selection = StalledSelection(subscribers: subscribers, percent: percent)
                let stalled = (0..<subscribers).filter { selection.isStalled(rank: $0) }
                #expect(stalled.count == selection.count, "subscribers \(subscribers) percent \(percent)")
                // Evenly spaced: consecutive stalled ranks are floor or ceil of subscribers / count apart.
                if stalled.count > 1 {
                    let gaps = zip(stalled.dropFirst(), stalled).map { $0 - $1 }
                    #expect(gaps.max()! - gaps.min()! <= 1, "subscribers \(subscribers) percent \(percent)")
                }
                #expect(!selection.isStalled(rank: -1))
                #expect(!selection.isStalled(rank: subscribers))
            }
        }
    }

    @Test("10% of 1,000: every tenth subscriber")
    func everyTenth() {
        let selection = StalledSelection(subscribers: 1000, percent: 10)
        let stalled = (0..<1000).filter { selection.isStalled(rank: $0) }
        #expect(stalled.first == 9)
        #expect(stalled.allSatisfy { $0 % 10 == 9 })
    }
}
