/// A close status code (RFC 6455 §7.4).
public struct WebSocketCloseCode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt16

    public init(rawValue: UInt16) {
        self.rawValue = rawValue
    }

    /// 1000: the purpose of the connection was fulfilled.
    public static let normalClosure = WebSocketCloseCode(rawValue: 1000)
    /// 1001: the endpoint is going away (server shutdown, page navigation).
    public static let goingAway = WebSocketCloseCode(rawValue: 1001)
    /// 1002: protocol error.
    public static let protocolError = WebSocketCloseCode(rawValue: 1002)
    /// 1003: a data type the endpoint cannot accept.
    public static let unsupportedData = WebSocketCloseCode(rawValue: 1003)
    /// 1007: invalid frame payload data (e.g. invalid UTF-8 in a text message).
    public static let invalidPayload = WebSocketCloseCode(rawValue: 1007)
    /// 1008: a message violates the endpoint's policy.
    public static let policyViolation = WebSocketCloseCode(rawValue: 1008)
    /// 1009: a message is too big to process.
    public static let messageTooBig = WebSocketCloseCode(rawValue: 1009)
    /// 1011: an unexpected condition prevented the server from fulfilling the request.
    public static let internalError = WebSocketCloseCode(rawValue: 1011)

    /// Whether this code may appear in a Close frame (RFC 6455 §7.4.1, §7.4.2): 1000-1003 and 1007-1011 are
    /// defined, 3000-4999 are for libraries/applications. 1004 is reserved, 1005/1006/1015 must never be sent,
    /// codes below 1000 are unused and 1012-2999 are reserved for future RFCs.
    public var isValidOnWire: Bool {
        switch self.rawValue {
        case 1000...1003, 1007...1011, 3000...4999: return true
        default: return false
        }
    }

    public var description: String { String(self.rawValue) }
}
