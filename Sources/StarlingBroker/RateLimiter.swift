/// Paces one subscription's live messages to at most one per interval per conflation key (`x-max-rate` on
/// SUBSCRIBE, `max-rate` of a policy; issue 8). A message within its key's interval is held, replacing any held
/// one of the same key, and is due when the interval since that key's last message has passed: so the newest value
/// always arrives, at most one interval late. Memory is O(keys seen within one interval).
///
/// Event-loop-bound: owned by one subscription. Times are monotonic nanoseconds.
public final class RateLimiter {
    /// `x-max-rate` (updates per second; 0 = none: only policies pace).
    public let subscriberRate: Double
    private var lastSent: [ConflationKey: (at: UInt64, interval: UInt64)] = [:]
    private var held: [ConflationKey: (message: BrokerMessage, due: UInt64)] = [:]
    private var pruneAt = 1024
    /// When the timer that sends due messages fires, while one is set.
    public var timerDue: UInt64?

    public init(subscriberRate: Double) {
        self.subscriberRate = subscriberRate
    }

    public var isIdle: Bool { self.held.isEmpty }

    /// Messages conflated away (replaced while held), for metrics.
    public private(set) var conflatedCount = 0

    /// The pacing interval for `message` (ns; 0 = not paced).
    public func interval(for message: BrokerMessage) -> UInt64 {
        message.delivery.pacingInterval(subscriberRate: self.subscriberRate)
    }

    /// True when `message` may go out now (recorded as sent); false when it is held until `nextDue`.
    public func admit(_ message: BrokerMessage, interval: UInt64, now: UInt64) -> Bool {
        let key = ConflationKey(message)
        if let pending = self.held[key] {
            self.held[key] = (message, pending.due)
            self.conflatedCount += 1
            return false
        }
        if let last = self.lastSent[key], now &- last.at < interval {
            self.held[key] = (message, last.at + interval)
            return false
        }
        self.record(key, at: now, interval: interval)
        return true
    }

    /// Takes the held messages that are due at `now` (recorded as sent), oldest due first.
    public func takeDue(now: UInt64) -> [BrokerMessage] {
        var due: [(message: BrokerMessage, due: UInt64)] = []
        for (key, pending) in self.held where pending.due <= now {
            due.append(pending)
            self.held[key] = nil
            self.record(key, at: now, interval: self.interval(for: pending.message))
        }
        due.sort { $0.due < $1.due }
        return due.map(\.message)
    }

    /// When the earliest held message is due; nil when nothing is held.
    public var nextDue: UInt64? { self.held.values.lazy.map(\.due).min() }

    private func record(_ key: ConflationKey, at now: UInt64, interval: UInt64) {
        self.lastSent[key] = (now, interval)
        guard self.lastSent.count > self.pruneAt else { return }
        // Keys whose interval has passed are as good as never sent: forget them (keys are publisher-chosen).
        self.lastSent = self.lastSent.filter { now &- $0.value.at < $0.value.interval }
        self.pruneAt = max(1024, self.lastSent.count * 2)
    }
}
