import Atomics
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import StarlingWebSocket

/// Plugs `WebSocketHandshake` into NIO's `HTTPServerUpgradeHandler`. One instance per HTTP connection.
///
/// When the handshake is refused, `buildUpgradeResponse` fails; NIO then hands the request to `HTTPHandler`,
/// which answers it with the same `WebSocketHandshake` verdict (400/426 with a reason) — one source of truth.
final class WebSocketUpgrader: HTTPServerProtocolUpgrader, @unchecked Sendable {
    struct Rejected: Error {}

    let supportedProtocol = "websocket"
    let requiredUpgradeHeaders: [String] = []

    private let configuration: WebSocketConfiguration
    private let stompPaths: Set<String>
    private let echoPath: String?
    /// True while the server drains: no new session starts (HTTPHandler answers 503).
    private let draining: ManagedAtomic<Bool>
    /// Called on the channel's event loop once the WebSocket handler is in place, with the handshake's bearer token.
    private let attach: (ChannelHandlerContext, WebSocketUpgrade, _ isEcho: Bool, _ bearer: String?) -> EventLoopFuture<Void>
    // Set in buildUpgradeResponse and read in upgrade, both on the channel's event loop.
    private var accepted: (WebSocketUpgrade, isEcho: Bool, bearer: String?)?

    init(
        configuration: WebSocketConfiguration,
        draining: ManagedAtomic<Bool>,
        stompPaths: Set<String>,
        echoPath: String?,
        attach: @escaping (ChannelHandlerContext, WebSocketUpgrade, Bool, String?) -> EventLoopFuture<Void>
    ) {
        self.configuration = configuration
        self.draining = draining
        self.stompPaths = stompPaths
        self.echoPath = echoPath
        self.attach = attach
    }

    func buildUpgradeResponse(
        channel: any Channel,
        upgradeRequest: HTTPRequestHead,
        initialResponseHeaders: HTTPHeaders
    ) -> EventLoopFuture<HTTPHeaders> {
        let path = HTTPHandler.path(of: upgradeRequest.uri)
        let isEcho = self.echoPath != nil && path == self.echoPath
        guard isEcho || self.stompPaths.contains(path), !self.draining.load(ordering: .relaxed) else {
            return channel.eventLoop.makeFailedFuture(Rejected())
        }
        var configuration = self.configuration
        if isEcho { configuration.subprotocols = [] }
        switch WebSocketHandshake.negotiate(request: upgradeRequest, configuration: configuration) {
        case .reject:
            return channel.eventLoop.makeFailedFuture(Rejected())
        case .accept(let upgrade):
            self.accepted = (upgrade, isEcho, Self.bearer(upgradeRequest))
            var headers = initialResponseHeaders
            for (name, value) in upgrade.responseHeaders where !headers.contains(name: name) {
                headers.add(name: name, value: value)
            }
            return channel.eventLoop.makeSucceededFuture(headers)
        }
    }

    func upgrade(context: ChannelHandlerContext, upgradeRequest: HTTPRequestHead) -> EventLoopFuture<Void> {
        guard let (upgrade, isEcho, bearer) = self.accepted else {
            return context.eventLoop.makeFailedFuture(Rejected())
        }
        return self.attach(context, upgrade, isEcho, bearer)
    }

    /// A JWT given with the handshake (issue 9): `Authorization: Bearer <token>`, or `?access_token=<token>` since
    /// browsers cannot set headers on a WebSocket. CONNECT without a passcode uses it.
    static func bearer(_ request: HTTPRequestHead) -> String? {
        if let token = SessionStateMachine.bearer(request.headers.first(name: "Authorization")) { return token }
        guard let query = request.uri.split(separator: "?", maxSplits: 1).dropFirst().first else { return nil }
        for pair in query.split(separator: "&") where pair.hasPrefix("access_token=") {
            let value = String(pair.dropFirst("access_token=".count))
            return value.removingPercentEncoding ?? value
        }
        return nil
    }
}
