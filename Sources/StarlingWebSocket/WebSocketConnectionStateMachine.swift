import NIOCore

/// The protocol logic of one server-side WebSocket connection after the handshake (RFC 6455 §5.4-§5.5, §7;
/// RFC 7692 §6-§7.2), as a plain struct: frames in, one `FrameAction` out. No I/O, so it is tested directly.
///
/// It reassembles fragmented messages (control frames may arrive between fragments, §5.4), inflates
/// compressed ones, validates UTF-8 of text messages incrementally (fragment by fragment, so a bad byte fails
/// early) and enforces `maxMessageSize` on the assembled, inflated size. It tracks the closing handshake:
/// `open` -> `closeSent` (we started it, §7.1.2) -> `closed`, or `open` -> `closed` when the peer starts it
/// or the connection fails (§7.1.7).
struct WebSocketConnectionStateMachine {
    enum FrameAction: Equatable {
        case none
        /// Hand a complete message to the delegate.
        case deliver(ByteBuffer, isText: Bool)
        /// Answer a Ping with a Pong carrying the same payload (§5.5.2, §5.5.3).
        case sendPong(ByteBuffer)
        /// Fail the connection (§7.1.7): send Close(`error.closeCode`), then drop TCP.
        case fail(WebSocketProtocolError)
        /// The peer started the closing handshake: send Close(`reply`) and drop TCP (§5.5.1, §7.1.1: the
        /// server closes TCP first). `peerCode` is `nil` when the peer's Close had no payload.
        case acknowledgeClose(peerCode: WebSocketCloseCode?, reply: WebSocketCloseCode)
        /// The closing handshake is over (or was cut short while we were closing): drop TCP.
        case closeConnection(code: WebSocketCloseCode?)
    }

    enum CloseAction: Equatable {
        case none
        case sendClose(WebSocketCloseCode, reason: String)
    }

    private enum State {
        case open
        case closeSent(WebSocketCloseCode)
        case closed
    }

    /// A fragmented or compressed message being assembled.
    private struct PartialMessage {
        var isText: Bool
        var compressed: Bool
        var buffer: ByteBuffer?
        var validator = UTF8Validator()
        var compressedBytes = 0
    }

    let maxMessageSize: Int
    let deflate: NegotiatedDeflate?
    private let allocator: ByteBufferAllocator
    private var state: State = .open
    private var message: PartialMessage?
    /// Created with the first compressed message (RFC 7692 §7.2.2), freed by `connectionClosed()`.
    private var inflater: PerMessageInflater?

    init(maxMessageSize: Int, deflate: NegotiatedDeflate?, allocator: ByteBufferAllocator = ByteBufferAllocator()) {
        self.maxMessageSize = maxMessageSize
        self.deflate = deflate
        self.allocator = allocator
    }

    /// `true` once we sent a Close or the connection is done: no more messages go in or out.
    var isClosing: Bool {
        if case .open = self.state { return false }
        return true
    }

    var isClosed: Bool {
        if case .closed = self.state { return true }
        return false
    }

    // MARK: - Events

    mutating func receivedFrame(_ frame: WebSocketFrame) -> FrameAction {
        switch self.state {
        case .closed:
            return .none
        case .closeSent(let sentCode):
            // §5.5.1: after our Close, only the peer's Close matters; data and pings are discarded.
            guard frame.opcode == .close else { return .none }
            self.state = .closed
            self.message = nil
            var payload = frame.payload
            let peerCode = payload.readInteger(as: UInt16.self).map(WebSocketCloseCode.init(rawValue:))
            return .closeConnection(code: peerCode ?? sentCode)
        case .open:
            break
        }
        switch frame.opcode {
        case .ping:
            return .sendPong(frame.payload)
        case .pong:
            return .none  // §5.5.3: an unsolicited Pong needs no answer
        case .close:
            return self.receivedClose(frame.payload)
        case .text, .binary:
            // §5.4: a new message may not start while a fragmented one is open.
            guard self.message == nil else { return self.fail(.expectedContinuation) }
            let isText = frame.opcode == .text
            if frame.fin && !frame.rsv1 {
                return self.wholeMessage(frame.payload, isText: isText)
            }
            self.message = PartialMessage(isText: isText, compressed: frame.rsv1)
            return self.appendFragment(frame)
        case .continuation:
            guard self.message != nil else { return self.fail(.unexpectedContinuation) }
            return self.appendFragment(frame)
        }
    }

    /// The frame parser failed.
    mutating func parserFailed(_ error: WebSocketProtocolError) -> FrameAction {
        switch self.state {
        case .open:
            return self.fail(error)
        case .closeSent(let sentCode):
            self.state = .closed
            return .closeConnection(code: sentCode)
        case .closed:
            return .none
        }
    }

    /// The application wants to close (§7.1.2). Messages still being assembled are discarded.
    mutating func closeRequested(code: WebSocketCloseCode, reason: String) -> CloseAction {
        guard case .open = self.state else { return .none }
        self.state = .closeSent(code)
        self.message = nil
        return .sendClose(code, reason: reason)
    }

    /// The peer did not answer our Close in time.
    mutating func closeTimedOut() -> FrameAction {
        guard case .closeSent(let sentCode) = self.state else { return .none }
        self.state = .closed
        return .closeConnection(code: sentCode)
    }

    /// TCP is gone (or the handler was removed): free zlib memory.
    mutating func connectionClosed() {
        self.state = .closed
        self.message = nil
        self.inflater?.release()
        self.inflater = nil
    }

    // MARK: - Messages

    private mutating func fail(_ error: WebSocketProtocolError) -> FrameAction {
        self.state = .closed
        self.message = nil
        return .fail(error)
    }

    /// Fast path: an unfragmented, uncompressed message is delivered as the frame's own buffer.
    private mutating func wholeMessage(_ payload: ByteBuffer, isText: Bool) -> FrameAction {
        guard payload.readableBytes <= self.maxMessageSize else {
            return self.fail(.messageTooLarge(limit: self.maxMessageSize))
        }
        if isText {
            // §8.1: a text message must be valid UTF-8.
            guard payload.withUnsafeReadableBytes({ UTF8Validator.isValid($0) }) else {
                return self.fail(.invalidUTF8)
            }
        }
        return .deliver(payload, isText: isText)
    }

    private mutating func appendFragment(_ frame: WebSocketFrame) -> FrameAction {
        guard var message = self.message else { return .none }
        self.message = nil  // unique ownership of `message.buffer` while appending
        let payload = frame.payload
        var buffer: ByteBuffer
        let validateFrom: Int
        if message.compressed {
            // RFC 7692 §7.2.2: inflate the frames' concatenation, followed by 00 00 FF FF.
            message.compressedBytes += payload.readableBytes
            guard message.compressedBytes <= self.maxMessageSize else {
                return self.fail(.messageTooLarge(limit: self.maxMessageSize))
            }
            guard let inflater = self.makeInflater() else { return self.fail(.compressionUnavailable) }
            buffer = message.buffer ?? self.allocator.buffer(
                capacity: min(self.maxMessageSize, max(256, payload.readableBytes * 4))
            )
            validateFrom = buffer.writerIndex
            do {
                try inflater.inflate(payload, into: &buffer, limit: self.maxMessageSize)
                if frame.fin {
                    try inflater.finishMessage(into: &buffer, limit: self.maxMessageSize)
                    if self.deflate?.clientNoContextTakeover == true {
                        // Nothing carries over to the next message: free zlib's memory until one comes.
                        inflater.release()
                        self.inflater = nil
                    }
                }
            } catch {
                return self.fail(error)
            }
        } else {
            let assembled = message.buffer?.readableBytes ?? 0
            guard payload.readableBytes <= self.maxMessageSize - assembled else {
                return self.fail(.messageTooLarge(limit: self.maxMessageSize))
            }
            if var existing = message.buffer {
                message.buffer = nil
                validateFrom = existing.writerIndex
                existing.writeImmutableBuffer(payload)
                buffer = existing
            } else {
                buffer = payload
                validateFrom = payload.readerIndex
            }
        }
        if message.isText {
            let valid = buffer.withUnsafeReadableBytes { bytes in
                let start = validateFrom - buffer.readerIndex
                return message.validator.validate(UnsafeRawBufferPointer(rebasing: bytes[start...]))
            }
            guard valid else { return self.fail(.invalidUTF8) }
        }
        guard frame.fin else {
            message.buffer = buffer
            self.message = message
            return .none
        }
        guard !message.isText || message.validator.isComplete else { return self.fail(.invalidUTF8) }
        return .deliver(buffer, isText: message.isText)
    }

    private mutating func makeInflater() -> PerMessageInflater? {
        if let inflater = self.inflater { return inflater }
        guard let deflate = self.deflate else { return nil }
        self.inflater = PerMessageInflater(
            windowBits: deflate.clientMaxWindowBits, noContextTakeover: deflate.clientNoContextTakeover
        )
        return self.inflater
    }

    // MARK: - Closing handshake

    /// §5.5.1: the peer's Close: empty, or a 2-byte code valid on the wire plus a UTF-8 reason.
    private mutating func receivedClose(_ payload: ByteBuffer) -> FrameAction {
        var payload = payload
        guard payload.readableBytes > 0 else {
            self.state = .closed
            self.message = nil
            return .acknowledgeClose(peerCode: nil, reply: .normalClosure)
        }
        guard let rawCode = payload.readInteger(as: UInt16.self) else { return self.fail(.invalidClosePayload) }
        let code = WebSocketCloseCode(rawValue: rawCode)
        guard code.isValidOnWire else { return self.fail(.invalidCloseCode(rawCode)) }
        guard payload.withUnsafeReadableBytes({ UTF8Validator.isValid($0) }) else { return self.fail(.invalidUTF8) }
        self.state = .closed
        self.message = nil
        return .acknowledgeClose(peerCode: code, reply: code)
    }
}
