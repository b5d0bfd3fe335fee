import NIOConcurrencyHelpers
import NIOCore

/// The `idempotency-key` values SENDs used recently, per destination, shared by every event loop: a SEND whose key
/// was seen within `window` is answered (RECEIPT) but not delivered again, so a producer can retry after a lost
/// receipt or a reconnect without creating a duplicate.
///
/// Bounded: at most `capacity` keys (the oldest are forgotten first), each for `window` ms. One lock, taken only by
/// SENDs that carry the header.
public final class IdempotencyTable: Sendable {
    private struct State {
        var expiries: [String: Int64] = [:]
        /// Keys in insertion order with their expiry, to forget the oldest first.
        var order = CircularBuffer<(key: String, expiresAt: Int64)>()
    }

    public let window: Int64
    public let capacity: Int
    private let state = NIOLockedValueBox(State())

    public init(windowMilliseconds: Int64 = 300_000, capacity: Int = 100_000) {
        self.window = windowMilliseconds
        self.capacity = max(1, capacity)
    }

    /// True the first time `key` is used for `destination` within the window (and records it); false for a repeat.
    public func firstUse(key: String, destination: String, now: Int64) -> Bool {
        let entry = destination + "\u{0}" + key
        return self.state.withLockedValue { state in
            // Forget what expired, and the oldest beyond capacity.
            while let oldest = state.order.first,
                oldest.expiresAt <= now || state.order.count >= self.capacity
            {
                state.order.removeFirst()
                if state.expiries[oldest.key] == oldest.expiresAt { state.expiries[oldest.key] = nil }
            }
            if let expiresAt = state.expiries[entry], expiresAt > now { return false }
            let expiresAt = now + self.window
            state.expiries[entry] = expiresAt
            state.order.append((entry, expiresAt))
            return true
        }
    }

    /// Forgets `key` (its SEND was refused, so a retry must go through).
    public func forget(key: String, destination: String) {
        let entry = destination + "\u{0}" + key
        self.state.withLockedValue { state in state.expiries[entry] = nil }
    }

    public var count: Int { self.state.withLockedValue { $0.expiries.count } }
}
