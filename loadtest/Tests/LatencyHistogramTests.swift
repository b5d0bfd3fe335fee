import Testing

@testable import StarlingLoadtestKit

@Suite("LatencyHistogram")
struct LatencyHistogramTests {
    @Test("Percentiles are reported in milliseconds from microsecond records")
    func percentiles() {
        var histogram = LatencyHistogram()
        for value in 1...1000 as ClosedRange<UInt64> { histogram.record(microseconds: value * 1000) }  // 1...1000 ms
        let summary = histogram.summary
        #expect(abs(summary.p50 - 500) < 1)
        #expect(abs(summary.p90 - 900) < 1)
        #expect(abs(summary.p99 - 990) < 1)
        #expect(abs(summary.max - 1000) < 1)
    }

    @Test("Merging per-loop histograms gives the percentiles of all records together")
    func merge() {
        var fast = LatencyHistogram()
        var slow = LatencyHistogram()
        for _ in 0..<900 { fast.record(microseconds: 100) }
        for _ in 0..<100 { slow.record(microseconds: 50_000) }
        var merged = LatencyHistogram()
        merged.merge(fast)
        merged.merge(slow)
        #expect(merged.count == 1000)
        #expect(abs(merged.milliseconds(atPercentile: 50) - 0.1) < 0.001)
        #expect(abs(merged.milliseconds(atPercentile: 95) - 50) < 0.1)
        #expect(abs(merged.maxMilliseconds - 50) < 0.1)
    }

    @Test("An empty histogram reports zeros, and values out of range are clamped, not dropped")
    func emptyAndClamped() {
        var histogram = LatencyHistogram()
        #expect(histogram.summary == LatencySummary())
        histogram.record(microseconds: 0)
        histogram.record(microseconds: .max)
        #expect(histogram.count == 2)
        #expect(histogram.maxMilliseconds >= Double(LatencyHistogram.highestTrackableMicroseconds) / 1000 * 0.99)
    }
}
