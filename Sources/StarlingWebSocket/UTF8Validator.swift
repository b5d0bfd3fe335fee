/// Incremental UTF-8 validation (RFC 3629 §4, as required for text messages by RFC 6455 §8.1).
///
/// Fragments of a message (or chunks of inflated output) are fed in order; a sequence may be split between
/// them. ASCII runs are skipped 8 bytes at a time. Overlong forms, surrogates (U+D800-U+DFFF) and values
/// above U+10FFFF are rejected by narrowing the allowed range of the byte after the lead byte.
struct UTF8Validator {
    /// Continuation bytes still expected for the current sequence.
    private var pending: UInt8 = 0
    /// Allowed range of the next continuation byte.
    private var lower: UInt8 = 0x80
    private var upper: UInt8 = 0xBF

    init() {}

    /// `true` when no sequence is left unfinished (call at the end of a message).
    var isComplete: Bool { self.pending == 0 }

    /// Validates the next chunk; `false` as soon as an invalid byte is found.
    mutating func validate(_ bytes: UnsafeRawBufferPointer) -> Bool {
        let count = bytes.count
        guard count > 0, let base = bytes.baseAddress else { return true }
        var i = 0
        while i < count {
            if self.pending == 0 {
                // ASCII fast path: 8 bytes at a time while no byte has its high bit set.
                while i &+ 8 <= count,
                    base.loadUnaligned(fromByteOffset: i, as: UInt64.self) & 0x8080_8080_8080_8080 == 0
                {
                    i &+= 8
                }
                guard i < count else { return true }
                let byte = base.load(fromByteOffset: i, as: UInt8.self)
                i &+= 1
                switch byte {
                case 0x00...0x7F:
                    continue
                case 0xC2...0xDF:
                    self.pending = 1
                case 0xE0:
                    self.pending = 2
                    self.lower = 0xA0  // no overlong 3-byte forms
                case 0xE1...0xEC, 0xEE...0xEF:
                    self.pending = 2
                case 0xED:
                    self.pending = 2
                    self.upper = 0x9F  // no surrogates
                case 0xF0:
                    self.pending = 3
                    self.lower = 0x90  // no overlong 4-byte forms
                case 0xF1...0xF3:
                    self.pending = 3
                case 0xF4:
                    self.pending = 3
                    self.upper = 0x8F  // nothing above U+10FFFF
                default:
                    return false  // 0x80-0xC1 (stray continuation, overlong 2-byte) and 0xF5-0xFF
                }
            } else {
                let byte = base.load(fromByteOffset: i, as: UInt8.self)
                i &+= 1
                guard byte >= self.lower, byte <= self.upper else { return false }
                self.lower = 0x80
                self.upper = 0xBF
                self.pending &-= 1
            }
        }
        return true
    }

    /// Validates one complete buffer.
    static func isValid(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var validator = UTF8Validator()
        return validator.validate(bytes) && validator.isComplete
    }
}
