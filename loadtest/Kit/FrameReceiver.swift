import NIOCore
import StarlingSTOMP

/// Turns the STOMP bytes of a connection's WebSocket messages into frames: MESSAGE frames through
/// `FastMessageScanner` while that is safe, everything else through the full `STOMPFrameParser`.
///
/// The scanner only reads while the full parser holds no partial frame (`parserIdle`); once the parser has
/// carried bytes over (a frame split across WebSocket messages, or one the scanner left to it that had not
/// ended), the parser alone reads until it returns a frame. So the stream is always parsed in order, by exactly
/// one of the two, and both yield the same `ReceivedMessage` for the same frame (see `FrameReceiverTests`).
struct FrameReceiver {
    enum Received {
        case message(ReceivedMessage)
        /// Any frame other than MESSAGE (CONNECTED, RECEIPT, ERROR, ...), from the full parser.
        case frame(STOMPFrame)
    }

    private(set) var parser: STOMPFrameParser
    let runID: [UInt8]
    private let scanLimits: FastMessageScanner.Limits
    /// False: every frame goes through the full parser (tests compare both ways).
    var fastPathEnabled: Bool
    /// The full parser holds no partial frame, so the scanner may start at the next byte.
    private(set) var parserIdle = true
    /// Frames decided by the scanner and by the full parser (diagnostics and tests).
    private(set) var scanned: UInt64 = 0
    private(set) var parsed: UInt64 = 0

    init(limits: STOMPParserLimits, runID: [UInt8], fastPathEnabled: Bool = true) {
        self.parser = STOMPFrameParser(limits: limits, version: .v1_2)
        self.runID = runID
        self.scanLimits = FastMessageScanner.Limits(
            maxHeaderCount: limits.maxHeaderCount, maxHeaderLineLength: limits.maxHeaderLineLength,
            maxBodySize: limits.maxBodySize)
        self.fastPathEnabled = fastPathEnabled
    }

    /// The next frame in `input` (consuming its bytes), or nil once `input` is used up (a partial frame stays
    /// in the parser). Throws the full parser's errors; after one the connection is to be closed.
    @inline(__always)
    mutating func next(_ input: inout ByteBuffer) throws -> Received? {
        if self.parserIdle && self.fastPathEnabled {
            let limits = self.scanLimits
            let outcome = self.runID.withUnsafeBytes { runID in
                input.withUnsafeReadableBytes { bytes in
                    FastMessageScanner.scan(bytes, runID: runID, limits: limits)
                }
            }
            switch outcome {
            case .end(let consumed):
                input.moveReaderIndex(forwardBy: consumed)
                return nil
            case .message(var message, let ackRange, let consumed):
                if let ackRange {
                    message.ack = input.getSlice(at: input.readerIndex + ackRange.lowerBound, length: ackRange.count)
                }
                input.moveReaderIndex(forwardBy: consumed)
                self.scanned &+= 1
                return .message(message)
            case .fallback(let skipped):
                input.moveReaderIndex(forwardBy: skipped)
            }
        }
        return try self.parseFully(&input)
    }

    private mutating func parseFully(_ input: inout ByteBuffer) throws -> Received? {
        if input.readableBytes == 0 { return nil }
        let onlyEOLs = Self.isCompleteEOLs(input)
        let frame: STOMPFrame?
        do {
            frame = try self.parser.next(&input)
        } catch {
            self.parserIdle = false
            throw error
        }
        guard let frame else {
            // All of `input` went into the parser: it now holds a partial frame unless those were heart-beats.
            if !onlyEOLs { self.parserIdle = false }
            return nil
        }
        self.parserIdle = true
        self.parsed &+= 1
        if frame.command == .message {
            return .message(ReceivedMessage(frame: frame, runID: self.runID))
        }
        return .frame(frame)
    }

    /// True when `buffer` is nothing but whole EOLs ("\n", "\r\n"), which an idle parser consumes and stays idle.
    static func isCompleteEOLs(_ buffer: ByteBuffer) -> Bool {
        buffer.withUnsafeReadableBytes { bytes in
            var index = 0
            while index < bytes.count {
                if bytes[index] == UInt8(ascii: "\n") {
                    index += 1
                } else if bytes[index] == UInt8(ascii: "\r") && index + 1 < bytes.count
                    && bytes[index + 1] == UInt8(ascii: "\n")
                {
                    index += 2
                } else {
                    return false
                }
            }
            return true
        }
    }
}

extension ReceivedMessage {
    /// The same fields from a frame the full parser produced (first occurrence of each header wins; numbers as
    /// `Int(String)` / `UInt64(String)` read them).
    init(frame: STOMPFrame, runID: [UInt8]) {
        self.init()
        var seen: UInt8 = 0
        for header in frame.headers {
            switch header.name {
            case "x-lt-run" where seen & 1 == 0:
                seen |= 1
                self.run = header.value.utf8.elementsEqual(runID)
            case "x-lt-pub" where seen & 2 == 0:
                seen |= 2
                self.publisher = Int(header.value) ?? -1
            case "x-lt-seq" where seen & 4 == 0:
                seen |= 4
                self.seq = UInt64(header.value) ?? .max
            case "x-lt-ts" where seen & 8 == 0:
                seen |= 8
                self.sentAt = UInt64(header.value) ?? 0
            case "subscription" where seen & 16 == 0:
                seen |= 16
                self.subscription = Int(header.value) ?? -1
            case "ack" where seen & 32 == 0:
                seen |= 32
                self.ack = ByteBuffer(string: header.value)
            default:
                break
            }
        }
    }
}
