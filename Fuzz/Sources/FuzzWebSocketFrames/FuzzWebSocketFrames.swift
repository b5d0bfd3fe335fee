import FuzzSupport
import NIOCore
@testable import StarlingWebSocket  // WebSocketConnectionStateMachine is internal; debug builds are testable

// Input layout: [options] [cut seed] [close at] [WebSocket byte stream...]
//   options: bit 0 client side (parse server frames: unmasked expected); bit 1 permessage-deflate negotiated
//   (RSV1 allowed, compressed messages inflated); bit 2 client_no_context_takeover; bits 3-4 client window bits
//   (9, 11, 13, 15); bit 5 small limits (frame 200 bytes, message 300 bytes; else 1 MiB / 64 KiB).
//   cut seed: how the stream is cut into reads (`pieceLengths`); also picks the re-encoding masking key.
//   close at: 0 never, else the server starts the closing handshake before frame number `close at - 1`.
//
// Properties checked:
// 1. WebSocketFrameParser: the stream parsed in one buffer and in pieces gives the same frames and the same
//    error; `next` returns nil only with its input used up; after an error it throws the same error again.
// 2. Every frame obeys what the parser promises: control frames unfragmented and at most 125 bytes, RSV1 only on
//    text/binary and only when allowed, payload within maxFrameSize.
// 3. A parsed frame written again by WebSocketFrameEncoder (masked when the parser expects masking) has the
//    header length the encoder announces and parses back to the same frame.
// 4. WebSocketConnectionStateMachine (fed the frames, then the parser's error) acts as an independent model of
//    RFC 6455 §5.4-§5.5 / §7 says: exact pongs, exact close handling and codes, fragmentation errors, and every
//    uncompressed message delivered byte for byte as the model assembled it (or refused for size or UTF-8 exactly
//    when the model says so). Compressed messages: delivered within maxMessageSize, text valid UTF-8.

private struct Parsed: Equatable {
    var frames: [WebSocketFrame] = []
    var error: WebSocketProtocolError?
}

private func parse(_ buffers: [ByteBuffer], maxFrameSize: Int, masked: Bool, compression: Bool) -> Parsed {
    var parser = WebSocketFrameParser(maxFrameSize: maxFrameSize, expectMasked: masked, allowCompressionBit: compression)
    var parsed = Parsed()
    for var buffer in buffers {
        do {
            while let frame = try parser.next(&buffer) {
                parsed.frames.append(frame)
            }
            fuzzCheck(buffer.readableBytes == 0, "next returned nil with \(buffer.readableBytes) bytes left")
        } catch {
            parsed.error = error
            var more = ByteBuffer(bytes: [0x81, 0x80, 1, 2, 3, 4])
            do {
                _ = try parser.next(&more)
                fuzzCheck(false, "a failed parser returned a frame")
            } catch let again {
                fuzzCheck(again == error, "a failed parser threw \(again) after \(error)")
            }
            return parsed
        }
    }
    return parsed
}

private func isUTF8(_ bytes: some Collection<UInt8>) -> Bool {
    String(validating: bytes, as: UTF8.self) != nil
}

private func isValidCloseCode(_ code: UInt16) -> Bool {
    // RFC 6455 §7.4.1 (defined and sendable) and §7.4.2 (3000-4999 for libraries and applications).
    (1000...1003).contains(code) || (1007...1011).contains(code) || (3000...4999).contains(code)
}

/// The state machine checked frame by frame against a model of the RFC.
private struct Model {
    let maxMessageSize: Int
    let deflate: Bool
    var machine: WebSocketConnectionStateMachine
    var closeSent: WebSocketCloseCode?
    var closed = false
    /// The message being assembled: its type, whether compressed, and (uncompressed) its bytes.
    var message: (isText: Bool, compressed: Bool, bytes: [UInt8])?

    init(maxMessageSize: Int, deflate: NegotiatedDeflate?) {
        self.maxMessageSize = maxMessageSize
        self.deflate = deflate != nil
        self.machine = WebSocketConnectionStateMachine(maxMessageSize: maxMessageSize, deflate: deflate)
    }

    mutating func requestClose() {
        let action = self.machine.closeRequested(code: .goingAway, reason: "fuzz")
        if self.closed || self.closeSent != nil {
            fuzzCheck(action == .none, "a second close request gave \(action)")
            return
        }
        fuzzCheck(action == .sendClose(.goingAway, reason: "fuzz"), "close request gave \(action)")
        self.closeSent = .goingAway
        self.message = nil
    }

    mutating func receive(_ frame: WebSocketFrame) {
        let action = self.machine.receivedFrame(frame)
        let payload = Array(frame.payload.readableBytesView)
        if self.closed {
            fuzzCheck(action == .none, "a frame after the close gave \(action)")
            return
        }
        if let sent = self.closeSent {
            guard frame.opcode == .close else {
                fuzzCheck(action == .none, "a \(frame.opcode) frame after our Close gave \(action)")
                return
            }
            let peer = payload.count >= 2 ? WebSocketCloseCode(rawValue: UInt16(payload[0]) << 8 | UInt16(payload[1])) : nil
            fuzzCheck(action == .closeConnection(code: peer ?? sent), "the Close answering ours gave \(action)")
            self.closed = true
            return
        }
        self.receiveOpen(frame, payload: payload, action: action)
        fuzzCheck(self.machine.isClosed == self.closed, "isClosed \(self.machine.isClosed), model \(self.closed)")
    }

    private mutating func expectFailure(_ error: WebSocketProtocolError, _ action: WebSocketConnectionStateMachine.FrameAction) {
        fuzzCheck(action == .fail(error), "expected a failure with \(error), got \(action)")
        self.closed = true
        self.message = nil
    }

    private mutating func receiveOpen(_ frame: WebSocketFrame, payload: [UInt8], action: WebSocketConnectionStateMachine.FrameAction) {
        switch frame.opcode {
        case .ping:
            fuzzCheck(action == .sendPong(frame.payload), "a ping gave \(action)")
        case .pong:
            fuzzCheck(action == .none, "a pong gave \(action)")
        case .close:
            if payload.isEmpty {
                fuzzCheck(action == .acknowledgeClose(peerCode: nil, reply: .normalClosure), "an empty Close gave \(action)")
                self.closed = true
                self.message = nil
            } else if payload.count == 1 {
                self.expectFailure(.invalidClosePayload, action)
            } else {
                let code = UInt16(payload[0]) << 8 | UInt16(payload[1])
                if !isValidCloseCode(code) {
                    self.expectFailure(.invalidCloseCode(code), action)
                } else if !isUTF8(payload.dropFirst(2)) {
                    self.expectFailure(.invalidUTF8, action)
                } else {
                    let peer = WebSocketCloseCode(rawValue: code)
                    fuzzCheck(action == .acknowledgeClose(peerCode: peer, reply: peer), "Close \(code) gave \(action)")
                    self.closed = true
                    self.message = nil
                }
            }
        case .text, .binary, .continuation:
            self.receiveData(frame, payload: payload, action: action)
        }
    }

    private mutating func receiveData(_ frame: WebSocketFrame, payload: [UInt8], action: WebSocketConnectionStateMachine.FrameAction) {
        if frame.opcode == .continuation {
            guard self.message != nil else { return self.expectFailure(.unexpectedContinuation, action) }
        } else {
            guard self.message == nil else { return self.expectFailure(.expectedContinuation, action) }
            self.message = (frame.opcode == .text, frame.rsv1, [])
        }
        let message = self.message!
        if message.compressed {
            // The inflated content is the deflate target's business; here only the envelope is checked.
            switch action {
            case .deliver(let delivered, let isText):
                fuzzCheck(frame.fin, "a compressed message delivered before its last frame")
                fuzzCheck(isText == message.isText, "a compressed message delivered with the wrong type")
                fuzzCheck(delivered.readableBytes <= self.maxMessageSize, "an inflated message past maxMessageSize")
                fuzzCheck(!isText || isUTF8(delivered.readableBytesView), "an inflated text message that is not UTF-8")
                self.message = nil
            case .fail(let error):
                fuzzCheck([.messageTooLarge(limit: self.maxMessageSize), .invalidCompressedData, .invalidUTF8].contains(error),
                          "a compressed message failed with \(error)")
                self.closed = true
                self.message = nil
            case .none:
                fuzzCheck(!frame.fin, "the last frame of a compressed message gave no action")
            default:
                fuzzCheck(false, "a compressed data frame gave \(action)")
            }
            return
        }
        let bytes = message.bytes + payload
        self.message!.bytes = bytes
        if bytes.count > self.maxMessageSize {
            return self.expectFailure(.messageTooLarge(limit: self.maxMessageSize), action)
        }
        if frame.fin {
            if message.isText && !isUTF8(bytes) {
                return self.expectFailure(.invalidUTF8, action)
            }
            fuzzCheck(action == .deliver(ByteBuffer(bytes: bytes), isText: message.isText),
                      "expected delivery of \(bytes.count) bytes, got \(action)")
            self.message = nil
            return
        }
        // An unfinished text message fails as soon as what arrived cannot begin valid UTF-8.
        if case .fail(.invalidUTF8) = action, message.isText {
            fuzzCheck(!isUTF8(bytes) && !isUTF8PrefixFixable(bytes), "valid UTF-8 so far refused")
            self.closed = true
            self.message = nil
            return
        }
        fuzzCheck(action == .none, "an unfinished fragment gave \(action)")
    }

    mutating func parserFailed(_ error: WebSocketProtocolError) {
        let action = self.machine.parserFailed(error)
        if self.closed {
            fuzzCheck(action == .none, "a parser error after the close gave \(action)")
        } else if let sent = self.closeSent {
            fuzzCheck(action == .closeConnection(code: sent), "a parser error while closing gave \(action)")
        } else {
            fuzzCheck(action == .fail(error), "a parser error gave \(action)")
        }
        self.closed = true
    }
}

/// True when `bytes` is valid UTF-8 up to an unfinished last sequence (so more bytes could complete it).
private func isUTF8PrefixFixable(_ bytes: [UInt8]) -> Bool {
    for cut in 1...min(3, bytes.count) {
        let head = bytes.dropLast(cut)
        let tail = Array(bytes.suffix(cut))
        guard isUTF8(head) else { continue }
        // The tail must be the start of a longer sequence: complete it with continuation bytes and try.
        for filler in [UInt8(0x80), 0x90, 0xA0, 0xBF] {
            if isUTF8(tail + Array(repeating: filler, count: 4 - cut)) || isUTF8(tail + Array(repeating: filler, count: 3 - cut))
                || (cut == 1 && isUTF8(tail + [filler])) {
                return true
            }
        }
    }
    return false
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    let options = input.byte()
    let cutSeed = input.byte()
    let closeAt = Int(input.byte())
    let serverSide = options & 0x1 == 0
    let deflate = options & 0x2 == 0 ? nil : NegotiatedDeflate(
        clientNoContextTakeover: options & 0x4 != 0, clientMaxWindowBits: [9, 11, 13, 15][Int(options >> 3) & 0x3]
    )
    let small = options & 0x20 != 0
    let maxFrameSize = small ? 200 : 1 << 20
    let maxMessageSize = small ? 300 : 1 << 16
    let stream = input.rest

    let whole = parse([ByteBuffer(bytes: stream)], maxFrameSize: maxFrameSize, masked: serverSide, compression: deflate != nil)
    let cut = parse(pieces(of: stream, seed: cutSeed), maxFrameSize: maxFrameSize, masked: serverSide,
                    compression: deflate != nil)
    fuzzCheck(whole == cut, "one buffer gave \(whole), pieces (seed \(cutSeed)) gave \(cut)")

    let key = (cutSeed, cutSeed &+ 85, cutSeed ^ 0xA5, UInt8(closeAt))
    for frame in whole.frames {
        fuzzCheck(frame.payload.readableBytes <= maxFrameSize, "a payload past maxFrameSize")
        if frame.opcode.isControl {
            fuzzCheck(frame.fin && frame.payload.readableBytes <= 125, "a fragmented or long control frame")
        }
        if frame.rsv1 {
            fuzzCheck(deflate != nil && (frame.opcode == .text || frame.opcode == .binary), "RSV1 where not allowed")
        }
        var encoded = ByteBuffer()
        WebSocketFrameEncoder.writeFrame(opcode: frame.opcode, fin: frame.fin, rsv1: frame.rsv1, payload: frame.payload,
                                         maskingKey: serverSide ? key : nil, to: &encoded)
        let headerLength = WebSocketFrameEncoder.headerLength(payloadLength: frame.payload.readableBytes, masked: serverSide)
        fuzzCheck(encoded.readableBytes == headerLength + frame.payload.readableBytes, "encoder header length")
        let again = parse([encoded], maxFrameSize: maxFrameSize, masked: serverSide, compression: deflate != nil)
        fuzzCheck(again == Parsed(frames: [frame]), "frame \(frame) re-encoded parsed as \(again)")
    }

    // The state machine is the server's: it sees what a server parser produced (client-side runs reuse it
    // anyway, as a second source of frame sequences).
    var model = Model(maxMessageSize: maxMessageSize, deflate: deflate)
    for (index, frame) in whole.frames.enumerated() {
        if closeAt == index + 1 { model.requestClose() }
        model.receive(frame)
    }
    if let error = whole.error { model.parserFailed(error) }
    model.machine.connectionClosed()
    fuzzCheck(model.machine.isClosed, "connectionClosed left the machine open")
    return 0
}
