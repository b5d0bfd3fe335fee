/// Counts STOMP frames in a plain TCP stream by their terminating NUL (STOMP 1.2 §"Augmented BNF").
///
/// Valid while no frame has a body with a NUL in it, which holds for the frames the benchmark publishes;
/// heart-beat EOLs carry no NUL and are ignored. Needs no state across reads and never allocates.
enum NULFrameCounter {
    static func count(in bytes: UnsafeRawBufferPointer) -> Int {
        var frames = 0
        for byte in bytes where byte == 0 { frames += 1 }
        return frames
    }
}

/// Counts complete data frames in the unmasked server-to-client WebSocket stream (RFC 6455 §5.2).
///
/// Only headers are decoded; payloads are skipped by length, so a frame split across reads at any byte is
/// handled and nothing is copied or allocated. The server sends one STOMP frame per WebSocket message.
struct WebSocketFrameCounter {
    private var payloadRemaining = 0
    private var headerBytesSeen = 0
    private var headerLength = 2
    private var opcodeAndFin: UInt8 = 0
    private var length7: UInt8 = 0
    private var extendedLength = 0
    private(set) var dataFrames = 0

    mutating func consume(_ bytes: UnsafeRawBufferPointer) {
        var index = 0
        let count = bytes.count
        while index < count {
            if self.payloadRemaining > 0 {
                let skipped = min(self.payloadRemaining, count - index)
                self.payloadRemaining -= skipped
                index += skipped
                continue
            }
            let byte = bytes[index]
            index += 1
            switch self.headerBytesSeen {
            case 0:
                self.opcodeAndFin = byte
            case 1:
                precondition(byte & 0x80 == 0, "server frames are never masked (RFC 6455 §5.1)")
                self.length7 = byte & 0x7F
                self.headerLength = 2 + (self.length7 == 126 ? 2 : self.length7 == 127 ? 8 : 0)
            default:
                self.extendedLength = self.extendedLength << 8 | Int(byte)
            }
            self.headerBytesSeen += 1
            if self.headerBytesSeen == self.headerLength {
                self.finishHeader()
            }
        }
    }

    private mutating func finishHeader() {
        let isFinal = self.opcodeAndFin & 0x80 != 0
        let opcode = self.opcodeAndFin & 0x0F
        // Data frames are text (1), binary (2) and the final continuation (0) of a fragmented message.
        if isFinal && opcode <= 2 { self.dataFrames += 1 }
        self.payloadRemaining = self.length7 < 126 ? Int(self.length7) : self.extendedLength
        self.headerBytesSeen = 0
        self.headerLength = 2
        self.extendedLength = 0
    }
}
