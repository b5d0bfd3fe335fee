import Histogram

/// Send-to-receive latency in microseconds (HdrHistogram, 3 significant digits), reported in milliseconds.
///
/// One per event loop, recorded without locks, merged at the end with `merge`.
public struct LatencyHistogram: Sendable, Codable {
    /// Ten minutes in µs: anything slower is clamped (and then shows as the max).
    public static let highestTrackableMicroseconds: UInt64 = 600_000_000

    public private(set) var histogram = Histogram<UInt64>(
        lowestDiscernibleValue: 1, highestTrackableValue: Self.highestTrackableMicroseconds,
        numberOfSignificantValueDigits: .three
    )

    public init() {}

    public var count: UInt64 { self.histogram.totalCount }

    @inline(__always)
    public mutating func record(microseconds: UInt64) {
        _ = self.histogram.record(min(max(microseconds, 1), Self.highestTrackableMicroseconds))
    }

    public mutating func merge(_ other: LatencyHistogram) {
        self.histogram.add(other.histogram)
    }

    /// The latency at `percentile` (0...100) in ms; 0 when empty.
    public func milliseconds(atPercentile percentile: Double) -> Double {
        guard self.count > 0 else { return 0 }
        return Double(self.histogram.valueAtPercentile(percentile)) / 1000
    }

    public var maxMilliseconds: Double {
        self.count > 0 ? Double(self.histogram.max) / 1000 : 0
    }

    public var summary: LatencySummary {
        LatencySummary(
            p50: self.milliseconds(atPercentile: 50), p90: self.milliseconds(atPercentile: 90),
            p99: self.milliseconds(atPercentile: 99), p999: self.milliseconds(atPercentile: 99.9),
            max: self.maxMilliseconds
        )
    }
}

/// `latencyMs` of the JSON result.
public struct LatencySummary: Sendable, Codable, Equatable {
    public var p50: Double
    public var p90: Double
    public var p99: Double
    public var p999: Double
    public var max: Double

    public init(p50: Double = 0, p90: Double = 0, p99: Double = 0, p999: Double = 0, max: Double = 0) {
        self.p50 = p50
        self.p90 = p90
        self.p99 = p99
        self.p999 = p999
        self.max = max
    }
}
