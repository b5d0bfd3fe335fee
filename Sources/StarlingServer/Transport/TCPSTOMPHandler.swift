import Logging
import NIOCore
import StarlingBroker

/// STOMP over a plain TCP connection (`--stomp-port`): bytes in to the session, frames out as bytes.
final class TCPSTOMPHandler: ChannelInboundHandler, STOMPTransport {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let makeConnection: (LoopBroker, any STOMPTransport) -> STOMPConnection
    private let broker: Broker
    private var context: ChannelHandlerContext?
    private var connection: STOMPConnection?
    private var closing = false

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
        self.connection?.received(&buffer)
    }

    func channelInactive(context: ChannelHandlerContext) {
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
        if let head { context.write(self.wrapOutboundOut(head), promise: nil) }
        context.write(self.wrapOutboundOut(body), promise: nil)
    }

    private static let eol: ByteBuffer = ByteBuffer(string: "\n")

    func writeHeartbeat() {
        self.context?.write(self.wrapOutboundOut(Self.eol), promise: nil)
    }

    func flush() {
        self.context?.flush()
    }

    func close(_ reason: TransportCloseReason) {
        guard let context, !self.closing else { return }
        self.closing = true
        let channel = context.channel
        let timeout = context.eventLoop.scheduleTask(in: Self.closeTimeout) { channel.close(promise: nil) }
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
}
