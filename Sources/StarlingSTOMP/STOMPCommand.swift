#if canImport(Darwin)
import Darwin
#elseif canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A STOMP frame command (STOMP 1.2 "Client Frames" and "Server Frames"). Commands are case-sensitive.
public enum STOMPCommand: String, Sendable, Hashable, CaseIterable {
    case connect = "CONNECT"
    case stomp = "STOMP"
    case send = "SEND"
    case subscribe = "SUBSCRIBE"
    case unsubscribe = "UNSUBSCRIBE"
    case ack = "ACK"
    case nack = "NACK"
    case begin = "BEGIN"
    case commit = "COMMIT"
    case abort = "ABORT"
    case disconnect = "DISCONNECT"
    case connected = "CONNECTED"
    case message = "MESSAGE"
    case receipt = "RECEIPT"
    case error = "ERROR"

    /// True for the frames a client sends to the server, false for CONNECTED, MESSAGE, RECEIPT and ERROR.
    public var isClientCommand: Bool {
        switch self {
        case .connect, .stomp, .send, .subscribe, .unsubscribe, .ack, .nack, .begin, .commit, .abort, .disconnect:
            true
        case .connected, .message, .receipt, .error:
            false
        }
    }

    /// True for the frames whose headers are never escaped (STOMP 1.2 "Value Encoding": "CONNECT and CONNECTED
    /// frames do not escape"; STOMP is the 1.2 alias of CONNECT).
    var isHandshake: Bool {
        switch self {
        case .connect, .stomp, .connected: true
        default: false
        }
    }

    /// Matches the raw command line (without its EOL) against the known commands, without creating a String.
    static func match(_ bytes: UnsafeRawBufferPointer) -> STOMPCommand? {
        guard let first = bytes.first else { return nil }
        let candidate: STOMPCommand
        switch (bytes.count, first) {
        case (3, UInt8(ascii: "A")): candidate = .ack
        case (4, UInt8(ascii: "N")): candidate = .nack
        case (4, UInt8(ascii: "S")): candidate = .send
        case (5, UInt8(ascii: "A")): candidate = .abort
        case (5, UInt8(ascii: "B")): candidate = .begin
        case (5, UInt8(ascii: "E")): candidate = .error
        case (5, UInt8(ascii: "S")): candidate = .stomp
        case (6, UInt8(ascii: "C")): candidate = .commit
        case (7, UInt8(ascii: "C")): candidate = .connect
        case (7, UInt8(ascii: "M")): candidate = .message
        case (7, UInt8(ascii: "R")): candidate = .receipt
        case (9, UInt8(ascii: "C")): candidate = .connected
        case (9, UInt8(ascii: "S")): candidate = .subscribe
        case (10, UInt8(ascii: "D")): candidate = .disconnect
        case (11, UInt8(ascii: "U")): candidate = .unsubscribe
        default: return nil
        }
        var name = candidate.rawValue
        return name.withUTF8 { memcmp($0.baseAddress!, bytes.baseAddress!, bytes.count) == 0 } ? candidate : nil
    }
}
