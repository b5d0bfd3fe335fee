import NIOCore

/// The channel handler of one server-side WebSocket connection (RFC 6455 §5-§7, RFC 7692).
///
/// Added to the pipeline after the HTTP handlers are gone (the caller feeds any bytes that followed the upgrade
/// request through `channelRead`). Inbound it feeds bytes to a `WebSocketFrameParser` and frames to a
/// `WebSocketConnectionStateMachine`, and carries out the actions they return; complete messages go to the
/// `delegate`. Outbound, `sendMessage` frames one message (compressed when negotiated and large enough).
/// A `ByteBuffer` written through the pipeline is sent as one binary message (the write's promise is kept).
///
/// Event-loop-bound: every method must be called on the channel's event loop. Not Sendable.
public final class WebSocketConnectionHandler: ChannelDuplexHandler {
    public typealias InboundIn = ByteBuffer
    public typealias OutboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    /// Held strongly until `webSocketConnectionDidClose` was called, then released (breaking the usual
    /// handler <-> session cycle), so the delegate does not need another owner while the connection lives.
    public var delegate: WebSocketConnectionDelegate?

    private let configuration: WebSocketConfiguration
    private let deflate: NegotiatedDeflate?
    private let deflateSettings: PerMessageDeflateConfiguration
    private var parser: WebSocketFrameParser
    private var stateMachine: WebSocketConnectionStateMachine
    /// Created with the first message worth compressing; freed when the connection finishes. Not used when
    /// `sharedCompressor` serves this connection (`server_no_context_takeover`).
    private var deflater: PerMessageDeflater?
    private let sharedCompressor: SharedMessageCompressor?
    /// The loop's byte and message counts (metrics); nil = not counted.
    private let traffic: WebSocketTraffic?
    private var context: ChannelHandlerContext?
    private var closeTimer: Scheduled<Void>?
    private var didFinish = false
    private var needsFlush = false
    /// Small messages written since the last flush (see `OutboundBatch`).
    private var batch = OutboundBatch()
    /// NIO's default allocator, which every channel of the server uses. Not read from `context.channel` per write
    /// (a retain and a lookup each time), and not stored per connection (32 bytes per idle connection).
    private var allocator: ByteBufferAllocator { ByteBufferAllocator() }

    /// Room in front of compressed output for the largest server frame header (2 + 8 bytes).
    private static let headroom = 10
    /// RFC 6455 §5.5: a control payload is at most 125 bytes, so a close reason at most 123.
    private static let maxCloseReasonLength = 123

    /// `sharedCompressor` (the event loop's) compresses this connection's messages when `server_no_context_takeover`
    /// was negotiated; without it, or with context takeover, the connection gets its own compressor.
    public init(
        configuration: WebSocketConfiguration,
        deflate: NegotiatedDeflate?,
        sharedCompressor: SharedMessageCompressor? = nil,
        traffic: WebSocketTraffic? = nil,
        delegate: WebSocketConnectionDelegate
    ) {
        self.configuration = configuration
        self.traffic = traffic
        self.sharedCompressor = deflate?.serverNoContextTakeover == true ? sharedCompressor : nil
        // What the handshake agreed is honoured even if `configuration.deflate` is nil (defaults are used then).
        self.deflate = deflate
        self.deflateSettings = configuration.deflate ?? PerMessageDeflateConfiguration()
        self.delegate = delegate
        self.parser = WebSocketFrameParser(
            maxFrameSize: configuration.maxFrameSize, expectMasked: true, allowCompressionBit: self.deflate != nil
        )
        self.stateMachine = WebSocketConnectionStateMachine(
            maxMessageSize: configuration.maxMessageSize, deflate: self.deflate
        )
    }

    /// `true` once the closing handshake began (either side) or the connection failed.
    public var isClosing: Bool { self.stateMachine.isClosing }

    // MARK: - Sending

    /// Sends one message whose payload is `prefix` followed by `payload`, as a single frame with FIN set.
    ///
    /// A small message (payload up to `OutboundBatch.maxCopiedBytes`) is copied into the connection's batch,
    /// which goes to the pipeline as one write at `flush`. A larger one is not copied: the frame header and
    /// `prefix` go in one small buffer and `payload` as a second write, so NIO can `writev` both. Compressed
    /// (deflate negotiated and at least `minimumSizeToCompress` bytes), the payload goes through the deflater
    /// (or the loop's shared compressor) and RSV1 is set. Does not flush. A no-op once closing began.
    public func sendMessage(prefix: ByteBuffer?, payload: ByteBuffer, isText: Bool) {
        self.sendMessage(prefix: prefix, payload: payload, isText: isText, promise: nil)
    }

    public func flush() {
        self.needsFlush = false
        guard let context = self.context else { return }
        self.writeBatch(context: context)
        context.flush()
    }

    /// Starts the closing handshake (RFC 6455 §7.1.2): sends Close(code, reason) and flushes, stops delivering
    /// messages, and closes TCP when the peer's Close arrives or after `closeTimeout`. The reason is cut to
    /// 123 bytes at a character boundary. `code` is sent as given (pick one with `isValidOnWire`).
    public func close(code: WebSocketCloseCode, reason: String) {
        guard let context = self.context else { return }
        guard case .sendClose(let code, let reason) = self.stateMachine.closeRequested(code: code, reason: reason) else {
            return
        }
        self.needsFlush = false
        self.writeBatch(context: context)
        context.writeAndFlush(self.wrapOutboundOut(self.closeFrame(code: code, reason: reason, context: context)), promise: nil)
        self.armCloseTimer(context: context)
    }

    private func sendMessage(prefix: ByteBuffer?, payload: ByteBuffer, isText: Bool, promise: EventLoopPromise<Void>?) {
        guard let context = self.context, !self.stateMachine.isClosing else {
            promise?.fail(ChannelError.ioOnClosedChannel)
            return
        }
        let opcode: WebSocketOpcode = isText ? .text : .binary
        let prefixLength = prefix?.readableBytes ?? 0
        let length = prefixLength + payload.readableBytes
        if let traffic = self.traffic {
            traffic.messagesOut &+= 1
            traffic.payloadBytesOut &+= length
        }
        if let deflate = self.deflate, length >= self.deflateSettings.minimumSizeToCompress,
            let shared = self.sharedCompressor, prefixLength <= SharedMessageCompressor.maxStoredPrefix
        {
            // The payload compressed once for every connection of the loop; the prefix as a stored block before it.
            guard let compressed = shared.compressedPayload(
                payload, windowBits: deflate.serverMaxWindowBits, allocator: self.allocator
            ) else {
                promise?.fail(ChannelError.ioOnClosedChannel)
                self.perform(.fail(.compressionUnavailable), context: context)
                return
            }
            let stored = prefixLength > 0 ? SharedMessageCompressor.storedBlockOverhead + prefixLength : 0
            let total = stored + compressed.readableBytes
            let headLength = WebSocketFrameEncoder.headerLength(payloadLength: total, masked: false) + stored
            let copied = promise == nil && compressed.readableBytes <= OutboundBatch.maxCopiedBytes
            if !copied { self.writeBatch(context: context) }
            var head = copied
                ? self.batch.take(reserving: headLength + compressed.readableBytes, allocator: self.allocator)
                : self.allocator.buffer(capacity: headLength)
            WebSocketFrameEncoder.writeFrameHeader(
                opcode: opcode, fin: true, rsv1: true, payloadLength: total, maskingKey: nil, to: &head
            )
            if let prefix, prefixLength > 0 { SharedMessageCompressor.writeStoredBlock(prefix, to: &head) }
            self.traffic?.wireBytesOut &+= head.readableBytes + compressed.readableBytes
            if copied {
                head.writeImmutableBuffer(compressed)
                self.batch.put(head)
            } else {
                context.write(self.wrapOutboundOut(head), promise: nil)
                context.write(self.wrapOutboundOut(compressed), promise: promise)
            }
            return
        }
        if self.deflate != nil, length >= self.deflateSettings.minimumSizeToCompress {
            // RFC 7692 §6: RSV1 on the (only) frame marks the message compressed.
            guard let deflater = self.makeDeflater(),
                var compressed = deflater.compress(
                    prefix: prefix, payload: payload, headroom: Self.headroom, allocator: self.allocator
                ),
                WebSocketFrameEncoder.prependFrameHeader(opcode: opcode, fin: true, rsv1: true, to: &compressed)
            else {
                // The deflate context is unusable; the peer could not inflate what follows.
                promise?.fail(ChannelError.ioOnClosedChannel)
                self.perform(.fail(.compressionUnavailable), context: context)
                return
            }
            self.traffic?.wireBytesOut &+= compressed.readableBytes
            self.writeBatch(context: context)
            context.write(self.wrapOutboundOut(compressed), promise: promise)
            return
        }
        let headLength = WebSocketFrameEncoder.headerLength(payloadLength: length, masked: false) + prefixLength
        self.traffic?.wireBytesOut &+= headLength + payload.readableBytes
        if promise == nil && payload.readableBytes <= OutboundBatch.maxCopiedBytes {
            // The usual case: a small message copied into this tick's batch (see `OutboundBatch`).
            var batch = self.batch.take(reserving: headLength + payload.readableBytes, allocator: self.allocator)
            WebSocketFrameEncoder.writeFrameHeader(
                opcode: opcode, fin: true, rsv1: false, payloadLength: length, maskingKey: nil, to: &batch
            )
            if let prefix { batch.writeImmutableBuffer(prefix) }
            batch.writeImmutableBuffer(payload)
            self.batch.put(batch)
            return
        }
        self.writeBatch(context: context)
        var head = self.allocator.buffer(capacity: headLength)
        WebSocketFrameEncoder.writeFrameHeader(
            opcode: opcode, fin: true, rsv1: false, payloadLength: length, maskingKey: nil, to: &head
        )
        if let prefix { head.writeImmutableBuffer(prefix) }
        if payload.readableBytes == 0 {
            context.write(self.wrapOutboundOut(head), promise: promise)
        } else {
            context.write(self.wrapOutboundOut(head), promise: nil)
            context.write(self.wrapOutboundOut(payload), promise: promise)
        }
    }

    /// Hands this tick's batched messages to the pipeline; called before any write that is not batched, so the
    /// peer sees frames in the order they were sent.
    private func writeBatch(context: ChannelHandlerContext) {
        if let batch = self.batch.drain() {
            context.write(self.wrapOutboundOut(batch), promise: nil)
        }
    }

    private func makeDeflater() -> PerMessageDeflater? {
        if let deflater = self.deflater { return deflater }
        guard let deflate = self.deflate else { return nil }
        self.deflater = PerMessageDeflater(
            windowBits: deflate.serverMaxWindowBits, memoryLevel: self.deflateSettings.memoryLevel,
            level: self.deflateSettings.compressionLevel, noContextTakeover: deflate.serverNoContextTakeover
        )
        return self.deflater
    }

    // MARK: - ChannelHandler

    public func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        self.batch.discard()
        self.closeTimer?.cancel()
        self.closeTimer = nil
        self.finish(code: nil)
        self.context = nil
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = self.unwrapInboundIn(data)
        self.traffic?.wireBytesIn &+= buffer.readableBytes
        while !self.stateMachine.isClosed, buffer.readableBytes > 0 {
            let action: WebSocketConnectionStateMachine.FrameAction
            do {
                guard let frame = try self.parser.next(&buffer) else { return }
                action = self.stateMachine.receivedFrame(frame)
            } catch {
                action = self.stateMachine.parserFailed(error)
            }
            self.perform(action, context: context)
        }
    }

    public func channelReadComplete(context: ChannelHandlerContext) {
        if self.needsFlush {
            self.flush()
        }
        context.fireChannelReadComplete()
    }

    public func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { self.delegate?.webSocketConnectionBecameWritable(self) }
        context.fireChannelWritabilityChanged()
    }

    public func channelInactive(context: ChannelHandlerContext) {
        self.batch.discard()
        self.closeTimer?.cancel()
        self.closeTimer = nil
        self.finish(code: nil)
        context.fireChannelInactive()
    }

    public func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.fireErrorCaught(error)
        context.close(promise: nil)
    }

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        self.sendMessage(prefix: nil, payload: self.unwrapOutboundIn(data), isText: false, promise: promise)
    }

    // MARK: - Actions

    private func perform(_ action: WebSocketConnectionStateMachine.FrameAction, context: ChannelHandlerContext) {
        switch action {
        case .none:
            break
        case .deliver(let message, let isText):
            if let traffic = self.traffic {
                traffic.messagesIn &+= 1
                traffic.payloadBytesIn &+= message.readableBytes
            }
            self.delegate?.webSocketConnection(self, didReceiveMessage: message, isText: isText)
        case .sendPong(let payload):
            var frame = context.channel.allocator.buffer(capacity: 2 + payload.readableBytes)
            WebSocketFrameEncoder.writeFrame(opcode: .pong, payload: payload, maskingKey: nil, to: &frame)
            self.writeBatch(context: context)
            context.write(self.wrapOutboundOut(frame), promise: nil)
            self.needsFlush = true
        case .fail(let error):
            if let traffic = self.traffic {
                if error.closeCode == .messageTooBig { traffic.tooBigFailures &+= 1 } else { traffic.protocolFailures &+= 1 }
            }
            self.finish(code: error.closeCode)
            self.sendCloseAndDrop(code: error.closeCode, reason: error.closeReason, context: context)
        case .acknowledgeClose(let peerCode, let reply):
            // §5.5.1: echo the status code, then (server side, §7.1.1) close TCP first.
            self.finish(code: peerCode)
            self.sendCloseAndDrop(code: reply, reason: "", context: context)
        case .closeConnection(let code):
            self.finish(code: code)
            context.close(promise: nil)
        }
    }

    /// Sends a Close and closes TCP once it is written; the close timer bounds the wait for a stuck peer.
    private func sendCloseAndDrop(code: WebSocketCloseCode, reason: String, context: ChannelHandlerContext) {
        self.needsFlush = false
        self.writeBatch(context: context)
        let written = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(self.wrapOutboundOut(self.closeFrame(code: code, reason: reason, context: context)), promise: written)
        written.futureResult.assumeIsolated().whenComplete { _ in
            context.close(promise: nil)
        }
        if context.channel.isActive {
            self.armCloseTimer(context: context)
        }
    }

    private func armCloseTimer(context: ChannelHandlerContext) {
        guard self.closeTimer == nil else { return }
        self.closeTimer = context.eventLoop.assumeIsolated().scheduleTask(in: self.configuration.closeTimeout) {
            [weak self] in
            guard let self else { return }
            self.closeTimer = nil
            if case .closeConnection(let code) = self.stateMachine.closeTimedOut() {
                self.finish(code: code)
            }
            context.close(promise: nil)
        }
    }

    /// Notifies the delegate once, then frees compression state.
    private func finish(code: WebSocketCloseCode?) {
        guard !self.didFinish else { return }
        self.didFinish = true
        self.stateMachine.connectionClosed()
        self.deflater?.release()
        self.deflater = nil
        let delegate = self.delegate
        self.delegate = nil
        delegate?.webSocketConnectionDidClose(self, code: code)
    }

    private func closeFrame(code: WebSocketCloseCode, reason: String, context: ChannelHandlerContext) -> ByteBuffer {
        var reasonBytes = reason.utf8.prefix(Self.maxCloseReasonLength)
        if reasonBytes.count < reason.utf8.count {
            // Do not cut a multi-byte character: drop trailing continuation bytes and their lead byte.
            while let last = reasonBytes.last, last & 0xC0 == 0x80 { reasonBytes = reasonBytes.dropLast() }
            if let last = reasonBytes.last, last >= 0xC0 { reasonBytes = reasonBytes.dropLast() }
        }
        let payloadLength = 2 + reasonBytes.count
        var frame = context.channel.allocator.buffer(capacity: 2 + payloadLength)
        WebSocketFrameEncoder.writeFrameHeader(
            opcode: .close, fin: true, rsv1: false, payloadLength: payloadLength, maskingKey: nil, to: &frame
        )
        frame.writeInteger(code.rawValue)
        frame.writeBytes(reasonBytes)
        return frame
    }
}

@available(*, unavailable)
extension WebSocketConnectionHandler: Sendable {}
