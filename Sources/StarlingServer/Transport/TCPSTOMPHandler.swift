import Logging
import NIOCore
import StarlingBroker
import StarlingWebSocket

/// STOMP over a plain TCP connection (`--stomp-port`): bytes in to the session, frames out as bytes.
final class TCPSTOMPHandler: ChannelInboundHandler, STOMPTransport {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let makeConnection: (LoopBroker, any STOMPTransport) -> STOMPConnection
    private let broker: Broker
    private var context: ChannelHandlerContext?
    private var connection: STOMPConnection?
    private var closing = false
    /// Small frames written since the last flush (see `OutboundBatch`).
    private var batch = OutboundBatch()
    /// NIO's default allocator, which every channel of the server uses. Not read from `context.channel` per write
    /// (a retain and a lookup each time), and not stored per connection (32 bytes per idle connection).
    private var allocator: ByteBufferAllocator { ByteBufferAllocator() }

    /// How long a closing connection may take to write its last bytes (ERROR, RECEIPT) before it is dropped.
    static let closeTimeout = TimeAmount.seconds(5)

    init(broker: Broker, makeConnection: @escaping (LoopBroker, any STOMPTransport) -> STOMPConnection) {
        self.broker = broker
        self.makeConnection = makeConnection
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func channelActive(context: ChannelHandlerContext) {
        self.connection = self.makeConnection(self.broker.loop(for: context.eventLoop), self)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !self.closing else { return }
        var buffer = self.unwrapInboundIn(data)
        guard let connection = self.connection else { return }
        connection.metrics.tcpBytesIn &+= buffer.readableBytes
        connection.received(&buffer)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { self.connection?.transportWritable() }
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.batch.discard()
        self.connection?.transportClosed()
        self.connection = nil
        self.context = nil
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    // MARK: STOMPTransport

    func write(head: ByteBuffer?, body: ByteBuffer, isText: Bool) {
        guard let context else { return }
        let headLength = head?.readableBytes ?? 0
        self.connection?.metrics.tcpBytesOut &+= headLength + body.readableBytes
        if body.readableBytes <= OutboundBatch.maxCopiedBytes {
            var batch = self.batch.take(reserving: headLength + body.readableBytes, allocator: self.allocator)
            if let head { batch.writeImmutableBuffer(head) }
            batch.writeImmutableBuffer(body)
            self.batch.put(batch)
            return
        }
        self.writeBatch(context: context)
        if let head { context.write(self.wrapOutboundOut(head), promise: nil) }
        context.write(self.wrapOutboundOut(body), promise: nil)
    }

    func writeHeartbeat() {
        guard self.context != nil else { return }
        var batch = self.batch.take(reserving: 1, allocator: self.allocator)
        batch.writeInteger(UInt8(ascii: "\n"))
        self.batch.put(batch)
    }

    func flush() {
        guard let context else { return }
        self.writeBatch(context: context)
        context.flush()
    }

    private func writeBatch(context: ChannelHandlerContext) {
        if let batch = self.batch.drain() {
            context.write(self.wrapOutboundOut(batch), promise: nil)
        }
    }

    func close(_ reason: TransportCloseReason) {
        guard let context, !self.closing else { return }
        self.closing = true
        let channel = context.channel
        let timeout = context.eventLoop.scheduleTask(in: Self.closeTimeout) { channel.close(promise: nil) }
        self.writeBatch(context: context)
        // Close once what is queued (ERROR, RECEIPT) went out: an empty write completes after every write before it.
        let written = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(self.wrapOutboundOut(ByteBuffer()), promise: written)
        written.futureResult.whenComplete { _ in
            timeout.cancel()
            channel.close(promise: nil)
        }
    }

    var isWritable: Bool { self.context?.channel.isWritable ?? false }
    var hasCloseCodes: Bool { false }
    var remoteAddress: String? { self.context?.channel.remoteAddress?.ipAddress }

    func setReading(_ reading: Bool) {
        guard let channel = self.context?.channel else { return }
        _ = try? channel.syncOptions?.setOption(.autoRead, value: reading)
    }
}
