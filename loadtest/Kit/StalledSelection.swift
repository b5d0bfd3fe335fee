/// Which fanout subscribers stall (`--stalled-percent P`): they connect, subscribe, and once the SUBSCRIBE's
/// RECEIPT is in stop reading their socket, so the broker's buffers for them fill.
///
/// Per topic, `count` = P% of the topic's subscribers, rounded to the nearest whole subscriber. Subscriber
/// number `rank` of a topic (0-based, in connection order) stalls when the evenly spaced sequence
/// `floor(rank * count / subscribers)` steps at it, so the stalled ones are spread evenly over the topic's
/// subscribers rather than bunched at the start (10% of 1,000: ranks 9, 19, ..., 999).
public struct StalledSelection: Sendable, Equatable {
    public let subscribers: Int
    public let count: Int

    public init(subscribers: Int, percent: Double) {
        self.subscribers = max(0, subscribers)
        let exact = Double(self.subscribers) * max(0, min(percent, 100)) / 100
        self.count = min(self.subscribers, Int(exact.rounded(.toNearestOrAwayFromZero)))
    }

    /// Subscribers per topic that keep reading.
    public var healthy: Int { self.subscribers - self.count }

    /// Whether subscriber `rank` (0 ..< subscribers) of a topic stalls.
    public func isStalled(rank: Int) -> Bool {
        guard self.count > 0, rank >= 0, rank < self.subscribers else { return false }
        // Bresenham: exactly `count` ranks in 0 ..< subscribers, evenly spaced.
        return (rank + 1) * self.count / self.subscribers > rank * self.count / self.subscribers
    }
}
