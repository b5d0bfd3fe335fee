import NIOCore

/// Incremental, resumable STOMP frame parser.
///
/// Grammar (STOMP 1.2 "Augmented BNF"):
/// ```
/// NULL                = <US-ASCII null (octet 0)>
/// LF                  = <US-ASCII line feed (aka newline) (octet 10)>
/// CR                  = <US-ASCII carriage return (octet 13)>
/// EOL                 = [CR] LF
/// OCTET               = <any 8-bit sequence of data>
///
/// frame-stream        = 1*frame
/// frame               = command EOL
///                       *( header EOL )
///                       EOL
///                       *OCTET
///                       NULL
///                       *( EOL )
/// command             = client-command | server-command
/// client-command      = "SEND" | "SUBSCRIBE" | "UNSUBSCRIBE" | "BEGIN" | "COMMIT" | "ABORT" | "ACK" | "NACK"
///                     | "DISCONNECT" | "CONNECT" | "STOMP"
/// server-command      = "CONNECTED" | "MESSAGE" | "RECEIPT" | "ERROR"
/// header              = header-name ":" header-value
/// header-name         = 1*<any OCTET except CR or LF or ":">
/// header-value        = *<any OCTET except CR or LF or ":">
/// ```
/// The body is exactly `content-length` octets (first occurrence of the header) followed by a NUL when that header is
/// present, otherwise every octet up to the first NUL. Header names and values are unescaped per `version`
/// (STOMP 1.2 "Value Encoding"), except in CONNECT, STOMP and CONNECTED frames.
///
/// Deliberate deviations, all on the lenient side unless noted:
/// - EOLs before a command are skipped in any number, also before the first frame (the grammar allows them only
///   after a frame's NUL); they are how heart-beats arrive.
/// - Every version accepts CRLF line ends (1.0 and 1.1 define LF only); so in 1.0, where nothing is escaped, a header
///   value cannot end in CR.
/// - A header value may contain a raw ':' (only the first ':' splits name from value); 1.2 requires `\c`.
/// - A raw CR inside a header line (not just before its LF) is kept as data; the grammar forbids it.
/// - Whitespace around names and values is never trimmed, in any version (1.0 left it unspecified).
/// - Bodies are accepted on every command; which commands may carry one is the session's concern.
/// - An unknown command or a bad header line (bad escape, no ':', not UTF-8) is reported when the header block
///   ends, not at once, so that `failedFrameReceipt` can name the frame's receipt; a limit hit meanwhile still
///   reports the first problem.
/// - Stricter: command and header bytes must be valid UTF-8 (`.invalidUTF8`) and the limits in
///   `STOMPParserLimits` apply. A `content-length` too large for `Int` is reported as `.bodyTooLarge`.
///
/// Limits are enforced while scanning: the parser never holds more than one line (limit + 2 bytes) or one body
/// (limit + 1 bytes) of an incomplete frame, whatever the peer sends. Bodies are slices of the input buffer when a
/// frame arrives whole, and one contiguous copy when it arrives in pieces.
public struct STOMPFrameParser: Sendable {
    public var limits: STOMPParserLimits

    /// Header escaping rules for frames other than CONNECT/STOMP/CONNECTED (which are never unescaped).
    /// 1.0: no escaping at all. 1.1: `\n \c \\`. 1.2: `\r \n \c \\`. Anything else after '\' is `.invalidEscape`
    /// (1.1 and 1.2). The session sets this after version negotiation; it applies from the next frame on.
    public var version: STOMPVersion

    private enum State: Sendable {
        case command
        case headers
        case body
    }

    private var state: State = .command
    /// Bytes of the current line or body that arrived in earlier calls (nil or empty when there are none).
    private var pending: ByteBuffer?
    private var command: STOMPCommand = .send
    private var headers = STOMPHeaders()
    private var escaping: HeaderEscaping = .none
    /// Raw value of the first `content-length` header of the frame being parsed.
    private var contentLengthValue: String?
    /// Validated `content-length` once the headers are complete.
    private var bodyLength: Int?
    private var failure: STOMPParseError?
    /// An error found in the command or a header line, thrown once the header block ends, so the error can name
    /// the frame's `receipt` (STOMP 1.2 "ERROR": `receipt-id` when the bad frame had a receipt).
    private var deferredFailure: STOMPParseError?

    /// The `receipt` header of the frame that made the parser fail, when it was read before the failure.
    public private(set) var failedFrameReceipt: String?

    public init(limits: STOMPParserLimits = .init(), version: STOMPVersion = .v1_2) {
        self.limits = limits
        self.version = version
    }

    /// Consumes bytes from `buffer`. Returns a complete frame as soon as one is parsed (the buffer may still hold more
    /// bytes: call again). Returns nil once `buffer` is exhausted, with any partial frame kept inside the parser, so a
    /// frame may arrive split over any number of calls (byte by byte, or split across WebSocket messages) and several
    /// frames may arrive in one buffer. EOLs between frames (heart-beats: "\n" or "\r\n") are consumed silently.
    /// After a throw the parser is poisoned (keeps throwing the same error); the connection is to be closed.
    public mutating func next(_ buffer: inout ByteBuffer) throws -> STOMPFrame? {
        if let failure = self.failure {
            throw failure
        }
        do {
            return try self.parse(&buffer)
        } catch {
            // The first problem found is the one reported (a later limit may be a consequence of it).
            let reported = self.deferredFailure ?? error
            self.failure = reported
            self.failedFrameReceipt = self.headers["receipt"]
            self.pending = nil
            self.headers = STOMPHeaders()
            throw reported
        }
    }

    private mutating func parse(_ buffer: inout ByteBuffer) throws(STOMPParseError) -> STOMPFrame? {
        while true {
            switch self.state {
            case .command:
                let line = try self.withNextLine(
                    &buffer,
                    limit: self.limits.maxCommandLength,
                    tooLong: .commandTooLong(limit: self.limits.maxCommandLength)
                ) { line throws(STOMPParseError) -> CommandLine in
                    if line.isEmpty {
                        return .heartBeat
                    }
                    guard let command = STOMPCommand.match(line) else {
                        return .unknown(STOMPParseError.printable(line))
                    }
                    return .command(command)
                }
                switch line {
                case nil:
                    return nil
                case .heartBeat:
                    continue
                case .command(let command):
                    self.startFrame(command)
                case .unknown(let printable):
                    // Read the headers anyway, for the receipt; the frame is refused when they end.
                    self.deferredFailure = .unknownCommand(printable)
                    self.startFrame(.send)
                }

            case .headers:
                let escaping = self.escaping
                let maxHeaderCount = self.limits.maxHeaderCount
                let isFull = self.headers.count >= maxHeaderCount
                let line = try self.withNextLine(
                    &buffer,
                    limit: self.limits.maxHeaderLineLength,
                    tooLong: .headerLineTooLong(limit: self.limits.maxHeaderLineLength)
                ) { line throws(STOMPParseError) -> HeaderLine in
                    if line.isEmpty {
                        return .end
                    }
                    if isFull {
                        throw .tooManyHeaders(limit: maxHeaderCount)
                    }
                    do throws(STOMPParseError) {
                        let header = try Self.decodeHeader(line, escaping: escaping)
                        return .header(name: header.name, value: header.value)
                    } catch {
                        return .invalid(error)
                    }
                }
                switch line {
                case nil:
                    return nil
                case .invalid(let error):
                    if self.deferredFailure == nil { self.deferredFailure = error }
                case .end:
                    if let failure = self.deferredFailure {
                        throw failure
                    }
                    if let value = self.contentLengthValue {
                        self.bodyLength = try Self.parseContentLength(value, maxBodySize: self.limits.maxBodySize)
                    }
                    self.state = .body
                case .header(let name, let value):
                    if self.contentLengthValue == nil && name == "content-length" {
                        self.contentLengthValue = value
                    }
                    self.headers.add(name, value)
                }

            case .body:
                guard let body = try self.readBody(&buffer) else {
                    return nil
                }
                let frame = STOMPFrame(self.command, headers: self.headers, body: body)
                self.headers = STOMPHeaders()
                self.state = .command
                return frame
            }
        }
    }

    private mutating func startFrame(_ command: STOMPCommand) {
        self.command = command
        self.headers = STOMPHeaders()
        self.headers.reserveCapacity(8)
        self.contentLengthValue = nil
        self.bodyLength = nil
        if command.isHandshake {
            self.escaping = .none
        } else {
            switch self.version {
            case .v1_0: self.escaping = .none
            case .v1_1: self.escaping = .v11
            case .v1_2: self.escaping = .v12
            }
        }
        self.state = .headers
    }

    /// Finds the next complete line, runs `body` on its content (EOL stripped) and consumes it. Returns nil when
    /// `buffer` ends before the LF, after moving its bytes into `pending`.
    ///
    /// Scans at most `limit + 2` bytes of a line (content, CR, LF), so an endless line fails as soon as it is too long.
    private mutating func withNextLine<Result>(
        _ buffer: inout ByteBuffer,
        limit: Int,
        tooLong: STOMPParseError,
        _ body: (UnsafeRawBufferPointer) throws(STOMPParseError) -> Result
    ) throws(STOMPParseError) -> Result? {
        let carried = self.pending?.readableBytes ?? 0
        let window = max(0, min(buffer.readableBytes, limit + 2 - carried))
        let lineFeed = buffer.withUnsafeReadableBytes { bytes in
            findByte(UInt8(ascii: "\n"), in: bytes, count: window)
        }
        guard let lineFeed else {
            if carried + buffer.readableBytes > limit + 1 {
                throw tooLong
            }
            self.carry(&buffer)
            return nil
        }
        if carried == 0 {
            let result = try buffer.withUnsafeReadableBytes { bytes throws(STOMPParseError) -> Result in
                try Self.withContent(UnsafeRawBufferPointer(rebasing: bytes[..<lineFeed]), limit, tooLong, body)
            }
            buffer.moveReaderIndex(forwardBy: lineFeed + 1)
            return result
        }
        var line = self.pending!
        self.pending = nil
        line.writeImmutableBuffer(buffer.readSlice(length: lineFeed)!)
        buffer.moveReaderIndex(forwardBy: 1)
        let result = try line.withUnsafeReadableBytes { bytes throws(STOMPParseError) -> Result in
            try Self.withContent(bytes, limit, tooLong, body)
        }
        line.clear()
        self.pending = line
        return result
    }

    private static func withContent<Result>(
        _ line: UnsafeRawBufferPointer,
        _ limit: Int,
        _ tooLong: STOMPParseError,
        _ body: (UnsafeRawBufferPointer) throws(STOMPParseError) -> Result
    ) throws(STOMPParseError) -> Result {
        var content = line
        if content.last == UInt8(ascii: "\r") {
            content = UnsafeRawBufferPointer(rebasing: content.dropLast())
        }
        if content.count > limit {
            throw tooLong
        }
        return try body(content)
    }

    /// Reads the body and its NUL, or returns nil when `buffer` ends first, after moving its bytes into `pending`.
    /// Never scans or keeps more than `maxBodySize + 1` bytes of a body.
    private mutating func readBody(_ buffer: inout ByteBuffer) throws(STOMPParseError) -> ByteBuffer? {
        let carried = self.pending?.readableBytes ?? 0
        if let length = self.bodyLength {
            let missing = length - carried
            guard buffer.readableBytes > missing else {
                self.carry(&buffer)
                return nil
            }
            let body = self.takeBody(from: &buffer, count: missing, carried: carried)
            guard buffer.readInteger(as: UInt8.self) == 0 else {
                throw .missingNullTerminator
            }
            return body
        }
        let maxBodySize = self.limits.maxBodySize
        let window = max(0, min(buffer.readableBytes, maxBodySize + 1 - carried))
        let null = buffer.withUnsafeReadableBytes { bytes in
            findByte(0, in: bytes, count: window)
        }
        guard let null else {
            if carried + buffer.readableBytes > maxBodySize {
                throw .bodyTooLarge(limit: maxBodySize)
            }
            self.carry(&buffer)
            return nil
        }
        let body = self.takeBody(from: &buffer, count: null, carried: carried)
        buffer.moveReaderIndex(forwardBy: 1)
        return body
    }

    /// The body made of the carried bytes and the next `count` bytes of `buffer`: a slice of `buffer` when nothing
    /// was carried (no copy), else the pending buffer with those bytes appended.
    private mutating func takeBody(from buffer: inout ByteBuffer, count: Int, carried: Int) -> ByteBuffer {
        if carried == 0 {
            return buffer.readSlice(length: count)!
        }
        var body = self.pending!
        self.pending = nil
        body.writeImmutableBuffer(buffer.readSlice(length: count)!)
        return body
    }

    /// Moves all of `buffer` into `pending`, copying it: keeping a slice would pin the caller's whole read buffer.
    private mutating func carry(_ buffer: inout ByteBuffer) {
        guard buffer.readableBytes > 0 else {
            return
        }
        if self.pending == nil {
            self.pending = ByteBuffer()
        }
        self.pending!.writeBuffer(&buffer)
    }
}

extension STOMPFrameParser {
    private enum CommandLine {
        case heartBeat
        case command(STOMPCommand)
        case unknown(String)
    }

    private enum HeaderLine {
        case end
        case header(name: String, value: String)
        case invalid(STOMPParseError)
    }
}
