import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#elseif canImport(Musl)
import Musl
#endif

/// What the load generator needs from one MESSAGE frame: the verification headers and the `ack` value.
///
/// Built either by `FastMessageScanner` straight from bytes or, for frames the scanner leaves to the full parser,
/// from a parsed `STOMPFrame` (`ReceivedMessage(frame:runID:)`). Both take the first occurrence of a repeated
/// header (STOMP 1.2 "Repeated Header Entries").
struct ReceivedMessage: Equatable {
    /// `x-lt-run` equals this run's id.
    var run = false
    /// `x-lt-pub`, or -1 when absent or not a number.
    var publisher = -1
    /// `x-lt-seq`, or `.max` when absent or not a number.
    var seq: UInt64 = .max
    /// `x-lt-ts` (monotonic ns at send time), or 0 when absent or not a number.
    var sentAt: UInt64 = 0
    /// `subscription`, or -1 when absent or not a number.
    var subscription = -1
    /// The unescaped `ack` value's bytes, when the frame has one (client-individual subscriptions).
    var ack: ByteBuffer?
}

/// A byte-level reader for the common case of the receive path: one or more complete MESSAGE frames at the
/// start of a buffer, with nothing unusual in them. No String, no `STOMPFrame`, no header array.
///
/// It decides only frames it is sure the full `STOMPFrameParser` (STOMP 1.2 escaping) would parse into the same
/// values; for anything else it answers `.fallback` and the caller hands the bytes to the full parser:
/// - another command than `MESSAGE`, or a command line the parser would reject;
/// - a frame that does not end inside `bytes` (split across reads or WebSocket messages);
/// - a header line with a '\' (escapes, possibly invalid ones), a byte >= 0x80 (UTF-8 to validate), no ':' or
///   an empty name, or beyond the parser's limits (line length, header count, body size);
/// - a needed number (`x-lt-pub`, `x-lt-seq`, `x-lt-ts`, `subscription`, `content-length`) that is not 1 to 18
///   plain ASCII digits (the parser / `Int(String)` decide signs, blanks, overflow and errors);
/// - a `content-length` body not followed by its NUL (the parser reports that error).
/// CRLF line ends are handled here the way the parser handles them (one CR before the LF is dropped).
enum FastMessageScanner {
    enum Outcome: Equatable {
        /// A whole MESSAGE frame: the first `consumed` bytes (leading EOLs, the frame and its NUL).
        /// `ack` is the byte range of the raw `ack` value (no escapes in it), when present.
        case message(ReceivedMessage, ackRange: Range<Int>?, consumed: Int)
        /// Nothing but complete EOLs (heart-beats): all of `consumed` bytes, which is `bytes.count`.
        case end(consumed: Int)
        /// Leave the rest to the full parser, after skipping `skipped` bytes of complete EOLs.
        case fallback(skipped: Int)
    }

    /// Parser limits the scanner must not exceed (so a frame it accepts is one the parser accepts).
    struct Limits {
        var maxHeaderCount: Int
        var maxHeaderLineLength: Int
        var maxBodySize: Int
    }

    /// Scans the frame at the start of `bytes`. `ReceivedMessage.ack` is left nil; the caller copies
    /// `ackRange` when it needs the value.
    static func scan(_ bytes: UnsafeRawBufferPointer, runID: UnsafeRawBufferPointer, limits: Limits) -> Outcome {
        let count = bytes.count
        guard let base = bytes.baseAddress else { return .end(consumed: 0) }
        // EOLs between frames (heart-beats).
        var start = 0
        while start < count {
            let byte = base.load(fromByteOffset: start, as: UInt8.self)
            if byte == 10 {
                start += 1
            } else if byte == 13 && start + 1 < count && base.load(fromByteOffset: start + 1, as: UInt8.self) == 10 {
                start += 2
            } else {
                break
            }
        }
        if start == count { return .end(consumed: count) }
        let fallback = Outcome.fallback(skipped: start)

        // Command line: "MESSAGE\n" or "MESSAGE\r\n".
        guard count - start >= 8 else { return fallback }
        let command = base.loadUnaligned(fromByteOffset: start, as: UInt64.self)
        var position: Int
        if command == 0x0A45_4741_5353_454D {  // "MESSAGE\n"
            position = start + 8
        } else if command == 0x0D45_4741_5353_454D, count - start >= 9,  // "MESSAGE\r" + "\n"
            base.load(fromByteOffset: start + 8, as: UInt8.self) == 10
        {
            position = start + 9
        } else {
            return fallback
        }

        var message = ReceivedMessage()
        var ackRange: Range<Int>?
        var contentLength = -1
        var seen: UInt8 = 0  // bits: run, pub, seq, ts, subscription, ack, content-length
        var headerCount = 0
        let headersStart = position
        // Header lines up to the blank line.
        while true {
            guard let found = memchr(base + position, 10, count - position) else { return fallback }
            let lineFeed = base.distance(to: UnsafeRawPointer(found))
            var end = lineFeed
            if end > position && base.load(fromByteOffset: end - 1, as: UInt8.self) == 13 { end -= 1 }
            if end == position {
                position = lineFeed + 1
                break
            }
            headerCount += 1
            guard headerCount <= limits.maxHeaderCount, end - position <= limits.maxHeaderLineLength else {
                return fallback
            }
            let lineStart = position
            position = lineFeed + 1
            guard let colonPointer = memchr(base + lineStart, 58, end - lineStart) else { return fallback }
            let colon = base.distance(to: UnsafeRawPointer(colonPointer))
            let nameLength = colon - lineStart
            guard nameLength > 0 else { return fallback }
            let value = colon + 1
            let name = base + lineStart
            switch nameLength {
            case 8:
                let word = name.loadUnaligned(as: UInt64.self)
                if word == 0x6E75_722D_746C_2D78 {  // "x-lt-run"
                    guard seen & 1 == 0 else { continue }
                    seen |= 1
                    message.run = end - value == runID.count
                        && (runID.count == 0 || memcmp(base + value, runID.baseAddress!, runID.count) == 0)
                } else if word == 0x6275_702D_746C_2D78 {  // "x-lt-pub"
                    guard seen & 2 == 0 else { continue }
                    seen |= 2
                    guard let number = Self.digits(base, value, end) else { return fallback }
                    message.publisher = Int(number)
                } else if word == 0x7165_732D_746C_2D78 {  // "x-lt-seq"
                    guard seen & 4 == 0 else { continue }
                    seen |= 4
                    guard let number = Self.digits(base, value, end) else { return fallback }
                    message.seq = number
                }
            case 7:
                if name.loadUnaligned(as: UInt32.self) == 0x746C_2D78,  // "x-lt"
                    name.loadUnaligned(fromByteOffset: 3, as: UInt32.self) == 0x7374_2D74  // "t-ts"
                {
                    guard seen & 8 == 0 else { continue }
                    seen |= 8
                    guard let number = Self.digits(base, value, end) else { return fallback }
                    message.sentAt = number
                }
            case 12:
                if name.loadUnaligned(as: UInt64.self) == 0x7069_7263_7362_7573,  // "subscrip"
                    name.loadUnaligned(fromByteOffset: 8, as: UInt32.self) == 0x6E6F_6974  // "tion"
                {
                    guard seen & 16 == 0 else { continue }
                    seen |= 16
                    guard let number = Self.digits(base, value, end) else { return fallback }
                    message.subscription = Int(number)
                }
            case 3:
                if name.load(as: UInt8.self) == 97, name.load(fromByteOffset: 1, as: UInt8.self) == 99,
                    name.load(fromByteOffset: 2, as: UInt8.self) == 107  // "ack"
                {
                    guard seen & 32 == 0 else { continue }
                    seen |= 32
                    ackRange = value..<end
                }
            case 14:
                if name.loadUnaligned(as: UInt64.self) == 0x2D74_6E65_746E_6F63,  // "content-"
                    name.loadUnaligned(fromByteOffset: 6, as: UInt64.self) == 0x6874_676E_656C_2D74  // "t-length"
                {
                    guard seen & 64 == 0 else { continue }
                    seen |= 64
                    guard let number = Self.digits(base, value, end), number <= UInt64(limits.maxBodySize) else {
                        return fallback
                    }
                    contentLength = Int(number)
                }
            default:
                break
            }
        }
        // Escapes and non-ASCII bytes anywhere in the header block: the parser decides.
        guard Self.isPlainASCII(base + headersStart, count: position - headersStart) else { return fallback }

        // Body and NUL.
        let consumed: Int
        if contentLength >= 0 {
            let null = position + contentLength
            guard null < count, base.load(fromByteOffset: null, as: UInt8.self) == 0 else { return fallback }
            consumed = null + 1
        } else {
            let window = min(count - position, limits.maxBodySize + 1)
            guard window > 0, let found = memchr(base + position, 0, window) else { return fallback }
            consumed = base.distance(to: UnsafeRawPointer(found)) + 1
        }
        return .message(message, ackRange: ackRange, consumed: consumed)
    }

    /// 1 to 18 ASCII digits (no sign, no blanks: those, and longer numbers, are left to the full parser).
    @inline(__always)
    static func digits(_ base: UnsafeRawPointer, _ start: Int, _ end: Int) -> UInt64? {
        let length = end - start
        guard length > 0 && length <= 18 else { return nil }
        var value: UInt64 = 0
        var index = start
        while index < end {
            let digit = base.load(fromByteOffset: index, as: UInt8.self) &- 48
            guard digit < 10 else { return nil }
            value = value &* 10 &+ UInt64(digit)
            index += 1
        }
        return value
    }

    /// No byte >= 0x80 and no '\' among `count` bytes; eight at a time.
    @inline(__always)
    static func isPlainASCII(_ base: UnsafeRawPointer, count: Int) -> Bool {
        let ones: UInt64 = 0x0101_0101_0101_0101
        let highs: UInt64 = 0x8080_8080_8080_8080
        let backslashes: UInt64 = 0x5C5C_5C5C_5C5C_5C5C
        var bad: UInt64 = 0
        var offset = 0
        while offset + 8 <= count {
            let word = base.loadUnaligned(fromByteOffset: offset, as: UInt64.self)
            let x = word ^ backslashes
            // High bit of a byte of `(x - 1) & ~x` is set for a zero byte of x (exact once high bytes are excluded).
            bad |= word | ((x &- ones) & ~x)
            offset += 8
        }
        guard bad & highs == 0 else { return false }
        while offset < count {
            let byte = base.load(fromByteOffset: offset, as: UInt8.self)
            if byte >= 0x80 || byte == 0x5C { return false }
            offset += 1
        }
        return true
    }
}
