import NIOCore
import NIOEmbedded
import Testing

@testable import StarlingWebSocket

/// The masking key of the RFC 6455 §5.7 examples.
let exampleKey: (UInt8, UInt8, UInt8, UInt8) = (0x37, 0xFA, 0x21, 0x3D)

func buffer(_ bytes: [UInt8]) -> ByteBuffer { ByteBuffer(bytes: bytes) }
func buffer(_ string: String) -> ByteBuffer { ByteBuffer(string: string) }

/// A frame as a client sends it (masked unless told otherwise).
func clientFrame(
    _ opcode: WebSocketOpcode,
    _ payload: ByteBuffer = ByteBuffer(),
    fin: Bool = true,
    rsv1: Bool = false,
    masked: Bool = true
) -> ByteBuffer {
    var out = ByteBuffer()
    WebSocketFrameEncoder.writeFrame(
        opcode: opcode, fin: fin, rsv1: rsv1, payload: payload, maskingKey: masked ? exampleKey : nil, to: &out
    )
    return out
}

func clientFrame(_ opcode: WebSocketOpcode, _ text: String, fin: Bool = true, rsv1: Bool = false) -> ByteBuffer {
    clientFrame(opcode, ByteBuffer(string: text), fin: fin, rsv1: rsv1)
}

/// A raw frame: byte 0 as given, masked payload.
func rawClientFrame(byte0: UInt8, payload: [UInt8] = []) -> ByteBuffer {
    var out = ByteBuffer(bytes: [byte0, 0x80 | UInt8(payload.count), exampleKey.0, exampleKey.1, exampleKey.2, exampleKey.3])
    var body = ByteBuffer(bytes: payload)
    WebSocketFrameEncoder.mask(&body, key: exampleKey)
    out.writeBuffer(&body)
    return out
}

func closePayload(_ code: UInt16, _ reason: [UInt8] = []) -> ByteBuffer {
    var payload = ByteBuffer()
    payload.writeInteger(code)
    payload.writeBytes(reason)
    return payload
}

final class RecordingDelegate: WebSocketConnectionDelegate {
    var messages: [(bytes: [UInt8], isText: Bool)] = []
    var closeCodes: [WebSocketCloseCode?] = []
    var onMessage: ((WebSocketConnectionHandler, ByteBuffer) -> Void)?

    var texts: [String] { self.messages.map { String(decoding: $0.bytes, as: UTF8.self) } }

    func webSocketConnection(_ connection: WebSocketConnectionHandler, didReceiveMessage message: ByteBuffer, isText: Bool) {
        self.messages.append((Array(message.readableBytesView), isText))
        self.onMessage?(connection, message)
    }

    func webSocketConnectionDidClose(_ connection: WebSocketConnectionHandler, code: WebSocketCloseCode?) {
        self.closeCodes.append(code)
    }
}

/// An active EmbeddedChannel with a WebSocketConnectionHandler.
struct Connection {
    let channel: EmbeddedChannel
    let handler: WebSocketConnectionHandler
    let delegate: RecordingDelegate

    init(
        configuration: WebSocketConfiguration = WebSocketConfiguration(),
        deflate: NegotiatedDeflate? = nil,
        sharedCompressor: SharedMessageCompressor? = nil
    ) throws {
        self.channel = EmbeddedChannel()
        self.delegate = RecordingDelegate()
        self.handler = WebSocketConnectionHandler(
            configuration: configuration, deflate: deflate, sharedCompressor: sharedCompressor, delegate: self.delegate
        )
        try self.channel.pipeline.syncOperations.addHandler(self.handler)
        try self.channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 9)).wait()
    }

    func send(_ bytes: ByteBuffer) throws {
        try self.channel.writeInbound(bytes)
    }

    /// Everything written so far, as individual outbound buffers.
    func outboundBuffers() throws -> [ByteBuffer] {
        var buffers: [ByteBuffer] = []
        while let next = try self.channel.readOutbound(as: ByteBuffer.self) { buffers.append(next) }
        return buffers
    }

    /// Everything written so far, parsed as server frames.
    func outboundFrames() throws -> [WebSocketFrame] {
        var all = ByteBuffer()
        for var part in try self.outboundBuffers() { all.writeBuffer(&part) }
        var parser = WebSocketFrameParser(expectMasked: false, allowCompressionBit: true)
        var frames: [WebSocketFrame] = []
        while let frame = try parser.next(&all) { frames.append(frame) }
        #expect(all.readableBytes == 0, "trailing bytes after the last frame")
        return frames
    }
}

extension WebSocketFrame {
    var closeCode: UInt16? { self.payload.getInteger(at: self.payload.readerIndex, as: UInt16.self) }
}
