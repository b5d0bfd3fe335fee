import NIOCore

/// One STOMP frame: a command, an ordered header list and a body (STOMP 1.2 "STOMP Frames").
///
/// A parsed frame keeps every header as it appeared on the wire, `content-length` included.
public struct STOMPFrame: Sendable, Equatable {
    public var command: STOMPCommand
    public var headers: STOMPHeaders
    public var body: ByteBuffer

    public init(_ command: STOMPCommand, headers: STOMPHeaders = [:], body: ByteBuffer = ByteBuffer()) {
        self.command = command
        self.headers = headers
        self.body = body
    }
}
