/// The verification counters of a run (or of one event loop's share of it), mergeable.
///
/// `lost` is computed once at the end, from what should have arrived: `expected - unique`. Late arrivals
/// during the drain still count, so a message is lost only if it never arrived.
public struct VerificationTally: Sendable, Equatable, Codable {
    /// Every MESSAGE received that belongs to this run, duplicates included.
    public var delivered: UInt64 = 0
    public var duplicated: UInt64 = 0
    public var outOfOrder: UInt64 = 0
    /// MESSAGE frames without valid `x-lt-*` headers of this run (e.g. left in a queue by an earlier run).
    public var foreign: UInt64 = 0

    public init() {}

    public var unique: UInt64 { self.delivered - self.duplicated }

    public mutating func merge(_ other: VerificationTally) {
        self.delivered += other.delivered
        self.duplicated += other.duplicated
        self.outOfOrder += other.outOfOrder
        self.foreign += other.foreign
    }

    /// Messages that should have arrived and did not (never negative: extra unique arrivals, which would be
    /// a bug in the expectation, are not "negative loss").
    public func lost(expected: UInt64) -> UInt64 {
        expected > self.unique ? expected - self.unique : 0
    }

    /// True when nothing was lost, duplicated or reordered.
    public func passes(expected: UInt64) -> Bool {
        self.lost(expected: expected) == 0 && self.duplicated == 0 && self.outOfOrder == 0
    }
}
