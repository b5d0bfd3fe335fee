#if canImport(Darwin)
import Darwin
#elseif canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Which escape sequences a frame's headers use (STOMP 1.2 "Value Encoding"; 1.1 "Value Encoding").
enum HeaderEscaping: Sendable {
    /// STOMP 1.0, and CONNECT/STOMP/CONNECTED frames in every version: bytes are taken literally.
    case none
    /// STOMP 1.1: `\n`, `\c`, `\\`.
    case v11
    /// STOMP 1.2: `\r`, `\n`, `\c`, `\\`.
    case v12
}

/// The offset of the first `byte` among the first `count` bytes of `bytes`. memchr is vectorised by libc, which
/// matters when scanning a large body for its NUL.
@inline(__always)
func findByte(_ byte: UInt8, in bytes: UnsafeRawBufferPointer, count: Int) -> Int? {
    guard count > 0, let base = bytes.baseAddress else {
        return nil
    }
    guard let found = memchr(base, Int32(byte), min(count, bytes.count)) else {
        return nil
    }
    return base.distance(to: UnsafeRawPointer(found))
}

extension STOMPFrameParser {
    /// Splits a header line (EOL already stripped) at its first ':' and decodes both sides.
    static func decodeHeader(
        _ line: UnsafeRawBufferPointer,
        escaping: HeaderEscaping
    ) throws(STOMPParseError) -> (name: String, value: String) {
        guard let colon = findByte(UInt8(ascii: ":"), in: line, count: line.count), colon > 0 else {
            throw .malformedHeader(STOMPParseError.printable(line))
        }
        let name = try Self.decodeHeaderText(UnsafeRawBufferPointer(rebasing: line[..<colon]), escaping: escaping)
        let value = try Self.decodeHeaderText(UnsafeRawBufferPointer(rebasing: line[(colon + 1)...]), escaping: escaping)
        return (name, value)
    }

    /// Unescapes a header name or value and checks it is UTF-8. Only text that holds a '\' is copied.
    static func decodeHeaderText(
        _ bytes: UnsafeRawBufferPointer,
        escaping: HeaderEscaping
    ) throws(STOMPParseError) -> String {
        guard escaping != .none, findByte(UInt8(ascii: "\\"), in: bytes, count: bytes.count) != nil else {
            guard let string = Self.decodeUTF8(bytes) else {
                throw .invalidUTF8
            }
            return string
        }
        var unescaped: [UInt8] = []
        unescaped.reserveCapacity(bytes.count)
        var index = 0
        while index < bytes.count {
            let byte = bytes[index]
            index += 1
            guard byte == UInt8(ascii: "\\") else {
                unescaped.append(byte)
                continue
            }
            guard index < bytes.count else {
                throw .invalidEscape("\\")
            }
            switch bytes[index] {
            case UInt8(ascii: "n"): unescaped.append(UInt8(ascii: "\n"))
            case UInt8(ascii: "c"): unescaped.append(UInt8(ascii: ":"))
            case UInt8(ascii: "\\"): unescaped.append(UInt8(ascii: "\\"))
            case UInt8(ascii: "r") where escaping == .v12: unescaped.append(UInt8(ascii: "\r"))
            default:
                throw .invalidEscape(STOMPParseError.printable(UnsafeRawBufferPointer(rebasing: bytes[(index - 1)...index])))
            }
            index += 1
        }
        guard let string = unescaped.withUnsafeBytes({ Self.decodeUTF8($0) }) else {
            throw .invalidUTF8
        }
        return string
    }

    /// Decodes UTF-8, rejecting invalid input. `String(validating:as:)` goes through unspecialised generic code (a
    /// third of the parse time in profiles), so this decodes with the fast repairing initialiser instead; ASCII (the
    /// usual header) cannot need repair, and other text is valid exactly when it decodes to the same bytes.
    static func decodeUTF8(_ bytes: UnsafeRawBufferPointer) -> String? {
        guard let base = bytes.baseAddress, bytes.count > 0 else {
            return ""
        }
        var string = String(decoding: bytes, as: UTF8.self)
        if Self.isASCII(bytes) {
            return string
        }
        let unchanged = string.utf8.count == bytes.count
            && string.withUTF8 { decoded in memcmp(decoded.baseAddress!, base, bytes.count) == 0 }
        return unchanged ? string : nil
    }

    /// True when no byte has its high bit set; reads eight bytes at a time.
    @inline(__always)
    static func isASCII(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var offset = 0
        var high: UInt64 = 0
        while offset + 8 <= bytes.count {
            high |= bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self)
            offset += 8
        }
        while offset < bytes.count {
            high |= UInt64(bytes[offset])
            offset += 1
        }
        return high & 0x8080_8080_8080_8080 == 0
    }

    /// Parses a `content-length` value: one or more ASCII digits, nothing else (no sign, no whitespace).
    static func parseContentLength(_ value: String, maxBodySize: Int) throws(STOMPParseError) -> Int {
        var length = 0
        var overflowed = false
        for byte in value.utf8 {
            guard byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") else {
                throw .invalidContentLength(Self.printable(value))
            }
            let (times10, overflow1) = length.multipliedReportingOverflow(by: 10)
            let (sum, overflow2) = times10.addingReportingOverflow(Int(byte - UInt8(ascii: "0")))
            overflowed = overflowed || overflow1 || overflow2
            length = sum
        }
        if value.isEmpty {
            throw .invalidContentLength("")
        }
        if overflowed || length > maxBodySize {
            throw .bodyTooLarge(limit: maxBodySize)
        }
        return length
    }

    private static func printable(_ value: String) -> String {
        Array(value.utf8.prefix(33)).withUnsafeBytes { STOMPParseError.printable($0) }
    }
}
