import Foundation
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
        /// `/api/v1/...`.
        var admin: AdminAPI
        var adminOperations: any AdminOperations
    }

    private let routes: Routes
    private var request: HTTPRequestHead?
    /// The body of an admin API request (other routes take none: theirs is read and dropped).
    private var body: ByteBuffer?
    /// True once the body went past the admin API's limit: the request is answered 413 at its end.
    private var bodyTooLarge = false

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
            self.body = Self.path(of: head.uri).hasPrefix(AdminAPI.prefix) ? ByteBuffer() : nil
            self.bodyTooLarge = false
        case .body(var part):
            // Only the admin API takes a body, up to its limit; anything else is read and dropped.
            guard self.body != nil, !self.bodyTooLarge else { return }
            if self.body!.readableBytes + part.readableBytes > self.routes.admin.maxBodySize {
                self.bodyTooLarge = true
                self.body = ByteBuffer()
                return
            }
            self.body!.writeBuffer(&part)
        case .end:
            guard let request = self.request else { return }
            self.request = nil
            if let body = self.body {
                self.body = nil
                self.respondAdmin(to: request, body: body, context: context)
                return
            }
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
            if self.routes.draining.load(ordering: .relaxed) {
                self.send(.serviceUnavailable, body: "server shutting down\n", request: request, context: context)
                return
            }
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

    /// `/api/...`: the admin API answers (asynchronously: it may need every loop); the reply is written here.
    private func respondAdmin(to request: HTTPRequestHead, body: ByteBuffer, context: ChannelHandlerContext) {
        let (path, query) = Self.split(request.uri)
        let apiRequest = AdminAPI.Request(
            method: request.method, path: path, query: query, authorization: request.headers.first(name: "Authorization"), body: body,
            bodyTooLarge: self.bodyTooLarge
        )
        self.routes.admin.handle(apiRequest, operations: self.routes.adminOperations, on: context.eventLoop).hop(to: context.eventLoop).assumeIsolated().whenComplete { result in
            let reply = (try? result.get()) ?? .error(.serviceUnavailable, "unavailable", "the server is stopping")
            var headers: HTTPHeaders = ["Content-Type": "application/json", "Cache-Control": "no-store"]
            for (name, value) in reply.headers { headers.add(name: name, value: value) }
            self.send(reply.status, headers: headers, body: reply.body, request: request, context: context)
        }
    }

    /// The path and the query parameters (percent-decoded, `+` as space) of a request URI.
    static func split(_ uri: String) -> (path: String, query: [String: String]) {
        let path = Self.path(of: uri)
        guard let mark = uri.firstIndex(of: "?") else { return (path, [:]) }
        var query: [String: String] = [:]
        for pair in uri[uri.index(after: mark)...].prefix(while: { $0 != "#" }).split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let decode = { (text: Substring) in String(text).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? String(text) }
            query[decode(parts[0])] = parts.count > 1 ? decode(parts[1]) : ""
        }
        return (path, query)
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
