/// How a topic's messages reach subscribers that cannot keep up, and how often at most (a `[[policy]]` table for
/// `/topic/` or `/room/` patterns: `slow-consumer`, `max-rate`, `max-pending-messages`; issue 8).
public struct DeliveryPolicy: Sendable, Equatable {
    /// What happens to messages for a connection whose socket is full (DESIGN.md, threading model).
    public enum SlowConsumer: String, Sendable, Equatable, CaseIterable {
        /// Hold them in order; past `max-pending-bytes`, ERROR and close.
        case disconnect
        /// Keep only the newest pending message per destination (per `x-key` within one).
        case conflate
        /// Keep at most `maxPendingMessages` per subscription, dropping the oldest; the next MESSAGE says
        /// `x-dropped:<n>`.
        case dropOldest = "drop-oldest"
    }

    public var slowConsumer = SlowConsumer.disconnect
    /// Most MESSAGEs per second per subscriber and destination (per `x-key` within one); 0 = unlimited. Updates
    /// beyond it are conflated to the newest.
    public var maxRate = 0.0
    /// `drop-oldest`: messages held per subscription while its connection is slow.
    public var maxPendingMessages = 1000

    public init(slowConsumer: SlowConsumer = .disconnect, maxRate: Double = 0, maxPendingMessages: Int = 1000) {
        self.slowConsumer = slowConsumer
        self.maxRate = maxRate
        self.maxPendingMessages = maxPendingMessages
    }

    public static let standard = DeliveryPolicy()

    /// Highest and lowest non-zero `max-rate` and `x-max-rate` (updates per second): one per 1,000 s at the slowest,
    /// so an interval always fits in nanoseconds.
    public static let maxRateLimit = 1000.0
    public static let minRateLimit = 0.001

    /// The pacing interval in nanoseconds of a subscriber asking for `subscriberRate` (`x-max-rate`, 0 = none) under
    /// this policy: the lower of the two rates wins; 0 = not paced.
    func pacingInterval(subscriberRate: Double) -> UInt64 {
        let rate = switch (subscriberRate > 0, self.maxRate > 0) {
        case (true, true): min(subscriberRate, self.maxRate)
        case (true, false): subscriberRate
        case (false, true): self.maxRate
        case (false, false): 0.0
        }
        return rate > 0 ? UInt64(1_000_000_000 / rate) : 0
    }
}

/// The delivery policies of the configuration, first match wins, for `/topic/` (and `/room/`) destinations.
public struct DeliveryPolicies: Sendable {
    public let rules: [(pattern: DestinationPattern, policy: DeliveryPolicy)]
    /// No rule differs from the standard policy: publishing looks nothing up.
    public let isTrivial: Bool
    /// Some rule sets `max-rate`.
    public let hasRateCaps: Bool

    public init(rules: [(pattern: DestinationPattern, policy: DeliveryPolicy)] = []) {
        self.rules = rules
        self.isTrivial = rules.allSatisfy { $0.policy == .standard }
        self.hasRateCaps = rules.contains { $0.policy.maxRate > 0 }
    }

    public func policy(for destination: String) -> DeliveryPolicy {
        self.rules.first { $0.pattern.matches(destination) }?.policy ?? .standard
    }
}

/// What conflation keeps apart: a destination, and the `x-key` header within it (e.g. one symbol of a feed that
/// publishes many to one topic).
struct ConflationKey: Hashable {
    let route: String
    let key: String?

    init(_ message: BrokerMessage) {
        self.route = message.route
        self.key = message.headers["x-key"]
    }
}
