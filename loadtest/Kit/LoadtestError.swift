/// Why a run could not be carried out. Each case maps to one exit status of CONTRACT.md.
public enum LoadtestError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Bad command line (exit 2).
    case usage(String)
    /// The target refused: TCP refused, HTTP status other than 101, a bad handshake, a STOMP ERROR, no
    /// CONNECTED in time, or a connection dropped (exit 3).
    case refused(String)

    public var description: String {
        switch self {
        case .usage(let message): message
        case .refused(let message): message
        }
    }

    public var exitStatus: Int32 {
        switch self {
        case .usage: ExitStatus.usage
        case .refused: ExitStatus.refused
        }
    }
}

/// Exit statuses of CONTRACT.md.
public enum ExitStatus {
    public static let ok: Int32 = 0
    public static let verificationFailed: Int32 = 1
    public static let usage: Int32 = 2
    public static let refused: Int32 = 3
}
