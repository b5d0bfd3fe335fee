import Atomics
import NIOCore
import NIOHTTP1
import StarlingWebSocket

/// Plain HTTP routes: `GET /healthz`, the web client at `/`, and the answer to a refused WebSocket handshake.
final class HTTPHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    struct Routes: Sendable {
        var files: StaticFiles
        var webSocket: WebSocketConfiguration
        var webSocketPaths: Set<String>
        var echoPath: String?
        var draining: ManagedAtomic<Bool>
        /// Renders `GET /metrics` (Prometheus text format), collecting from every event loop.
        var renderMetrics: @Sendable () -> EventLoopFuture<[UInt8]>
        var metrics: ServerMetrics
    }

    private let routes: Routes
    private var request: HTTPRequestHead?

    init(routes: Routes) {
        self.routes = routes
    }

    static func path(of uri: String) -> String {
        String(uri.prefix { $0 != "?" && $0 != "#" })
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .head(let head):
            self.request = head
        case .body:
            break  // No route takes a body yet; it is read and dropped.
        case .end:
            guard let request = self.request else { return }
            self.request = nil
            self.respond(to: request, context: context)
        }
    }

    /// A request the HTTP parser refused: NIO's error handler before us has answered 400 (`Connection: close`); the
    /// connection ends here instead of idling until the read timeout.
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // Only the parser's errors: a refused WebSocket upgrade arrives here too, and is answered by `respond`.
        if error is HTTPParserError { context.close(promise: nil) }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let idle = event as? IdleStateHandler.IdleStateEvent, idle == .read {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    private func respond(to request: HTTPRequestHead, context: ChannelHandlerContext) {
        let path = Self.path(of: request.uri)
        let isWebSocketPath = self.routes.webSocketPaths.contains(path) || (self.routes.echoPath != nil && path == self.routes.echoPath)
        if isWebSocketPath {
            // The upgrade handler passed this on: it is not a valid handshake. Say why (RFC 6455 §4.2.2).
            var configuration = self.routes.webSocket
            if path == self.routes.echoPath { configuration.subprotocols = [] }
            switch WebSocketHandshake.negotiate(request: request, configuration: configuration) {
            case .reject(let status, let headers, let reason):
                if status == .forbidden { self.routes.metrics.limitHit(.allowedOrigins) }
                self.send(status, headers: headers, body: reason + "\n", request: request, context: context)
            case .accept:
                self.send(.badRequest, body: "WebSocket upgrade expected\n", request: request, context: context)
            }
            return
        }
        guard request.method == .GET || request.method == .HEAD else {
            self.send(.methodNotAllowed, headers: ["Allow": "GET, HEAD"], body: "method not allowed\n", request: request, context: context)
            return
        }
        if path == "/healthz" {
            if self.routes.draining.load(ordering: .relaxed) {
                self.send(.serviceUnavailable, body: "draining\n", request: request, context: context)
            } else {
                self.send(.ok, body: "ok\n", request: request, context: context)
            }
            return
        }
        if path == "/metrics" {
            self.routes.renderMetrics().hop(to: context.eventLoop).assumeIsolated().whenComplete { result in
                switch result {
                case .success(let text):
                    let headers: HTTPHeaders = ["Content-Type": "text/plain; version=0.0.4; charset=utf-8"]
                    self.send(.ok, headers: headers, body: ByteBuffer(bytes: text), request: request, context: context)
                case .failure:
                    self.send(.serviceUnavailable, body: "metrics unavailable: the server is stopping\n", request: request, context: context)
                }
            }
            return
        }
        if let file = self.routes.files.file(for: path) {
            self.send(.ok, headers: ["Content-Type": file.contentType], body: file.bytes, request: request, context: context)
            return
        }
        self.send(.notFound, body: "not found\n", request: request, context: context)
    }

    private func send(_ status: HTTPResponseStatus, headers: HTTPHeaders = [:], body: String, request: HTTPRequestHead, context: ChannelHandlerContext) {
        var headers = headers
        if !headers.contains(name: "Content-Type") { headers.add(name: "Content-Type", value: "text/plain; charset=utf-8") }
        self.send(status, headers: headers, body: ByteBuffer(string: body), request: request, context: context)
    }

    private func send(_ status: HTTPResponseStatus, headers: HTTPHeaders, body: ByteBuffer, request: HTTPRequestHead, context: ChannelHandlerContext) {
        var head = HTTPResponseHead(version: request.version, status: status, headers: headers)
        head.headers.replaceOrAdd(name: "Content-Length", value: String(body.readableBytes))
        head.headers.replaceOrAdd(name: "Server", value: "Starling")
        let keepAlive = request.isKeepAlive && status.code < 400
        if !keepAlive { head.headers.replaceOrAdd(name: "Connection", value: "close") }
        context.write(self.wrapOutboundOut(.head(head)), promise: nil)
        if request.method != .HEAD {
            context.write(self.wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        }
        let channel = context.channel
        context.writeAndFlush(self.wrapOutboundOut(.end(nil))).whenComplete { _ in
            if !keepAlive { channel.close(promise: nil) }
        }
    }
}
