import NIOCore
import NIOPosix
import StarlingSTOMP

/// A minimal STOMP-over-TCP client for in-process end-to-end tests: raw bytes out, parsed frames in.
/// Used by one task at a time.
final class TestSTOMPClient: @unchecked Sendable {
    let channel: NIOAsyncChannel<ByteBuffer, ByteBuffer>
    private var iterator: NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator
    private var parser = STOMPFrameParser()
    private var pending: [STOMPFrame] = []
    private var buffer = ByteBuffer()

    init(channel: NIOAsyncChannel<ByteBuffer, ByteBuffer>) {
        self.channel = channel
        self.iterator = channel.inbound.makeAsyncIterator()
    }

    static func connect(port: Int) async throws -> TestSTOMPClient {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
        return TestSTOMPClient(channel: channel)
    }

    func send(_ raw: String) async throws {
        try await self.channel.outbound.write(ByteBuffer(string: raw))
    }

    func send(_ frame: STOMPFrame) async throws {
        try await self.channel.outbound.write(STOMPFrameEncoder.encode(frame, version: .v1_2))
    }

    /// Reads `count` frames (heart-beat EOLs skipped), or fewer if the server closes first. A close that surfaces
    /// as an error (the channel closed under a pending read, or a reset) also ends the frames: what was read counts.
    func frames(_ count: Int) async throws -> [STOMPFrame] {
        while self.pending.count < count {
            let next: ByteBuffer?
            do {
                next = try await self.iterator.next()
            } catch let error as ChannelError where error == .ioOnClosedChannel || error == .eof {
                break
            } catch is IOError {
                break
            }
            guard var buffer = next else { break }
            while let frame = try self.parser.next(&buffer) { self.pending.append(frame) }
        }
        let result = Array(self.pending.prefix(count))
        self.pending.removeFirst(result.count)
        return result
    }

    func close() async throws {
        try await self.channel.channel.close()
    }
}
