/// A STOMP protocol version, as negotiated through `accept-version` / `version` (STOMP 1.2 "Protocol Negotiation").
///
/// Ordered oldest to newest, so the session can pick `max` of the versions both sides support.
public enum STOMPVersion: String, Sendable, Hashable, Comparable, CaseIterable {
    case v1_0 = "1.0"
    case v1_1 = "1.1"
    case v1_2 = "1.2"

    private var ordinal: Int {
        switch self {
        case .v1_0: 0
        case .v1_1: 1
        case .v1_2: 2
        }
    }

    public static func < (lhs: STOMPVersion, rhs: STOMPVersion) -> Bool {
        lhs.ordinal < rhs.ordinal
    }
}
