/// Why `STOMPFrameParser` rejected its input. Every case is fatal for the connection: the session sends an ERROR
/// frame whose `message` header is `description`, then closes (STOMP 1.2 "ERROR").
public enum STOMPParseError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The command line is not a STOMP command; carries a truncated printable form of what was seen.
    case unknownCommand(String)
    case commandTooLong(limit: Int)
    case tooManyHeaders(limit: Int)
    case headerLineTooLong(limit: Int)
    case bodyTooLarge(limit: Int)
    /// A header line with no ':' or an empty name; carries a truncated printable form of the line.
    case malformedHeader(String)
    /// An escape sequence undefined for the version (STOMP 1.2 "Value Encoding": treated as a fatal error).
    case invalidEscape(String)
    /// A `content-length` value that is not a non-negative decimal integer.
    case invalidContentLength(String)
    /// The byte after a `content-length` body is not NUL.
    case missingNullTerminator
    /// The command or a header is not valid UTF-8.
    case invalidUTF8

    public var description: String {
        switch self {
        case .unknownCommand(let seen): "Unknown command '\(seen)'"
        case .commandTooLong(let limit): "Command line longer than \(limit) bytes"
        case .tooManyHeaders(let limit): "More than \(limit) headers in a frame"
        case .headerLineTooLong(let limit): "Header line longer than \(limit) bytes"
        case .bodyTooLarge(let limit): "Body larger than \(limit) bytes"
        case .malformedHeader(let line): "Malformed header line '\(line)'"
        case .invalidEscape(let sequence): "Undefined escape sequence '\(sequence)' in a header"
        case .invalidContentLength(let value): "Invalid content-length '\(value)'"
        case .missingNullTerminator: "Frame body not followed by a NUL octet"
        case .invalidUTF8: "Command or header is not valid UTF-8"
        }
    }

    /// A short, printable rendering of untrusted bytes for error messages: at most 32 bytes, printable ASCII kept,
    /// anything else written as `\xNN`, so an error message can never carry EOLs or NULs into an ERROR frame.
    static func printable(_ bytes: UnsafeRawBufferPointer, limit: Int = 32) -> String {
        var result = ""
        for byte in bytes.prefix(limit) {
            if byte >= 0x20 && byte < 0x7F {
                result.unicodeScalars.append(Unicode.Scalar(byte))
            } else {
                result += "\\x" + (byte < 0x10 ? "0" : "") + String(byte, radix: 16)
            }
        }
        if bytes.count > limit { result += "..." }
        return result
    }
}
