import NIOHTTP1
import Testing

@testable import StarlingWebSocket

@Suite("WebSocket opening handshake")
struct WebSocketHandshakeTests {
    static let key = "dGhlIHNhbXBsZSBub25jZQ=="

    func request(
        method: HTTPMethod = .GET,
        version: HTTPVersion = .http1_1,
        removing removed: [String] = [],
        replacing replaced: [String: String] = [:],
        adding added: [(String, String)] = []
    ) -> HTTPRequestHead {
        var headers = HTTPHeaders([
            ("Host", "server.example.com"),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", Self.key),
            ("Sec-WebSocket-Version", "13"),
        ])
        for name in removed { headers.remove(name: name) }
        for (name, value) in replaced { headers.replaceOrAdd(name: name, value: value) }
        for (name, value) in added { headers.add(name: name, value: value) }
        return HTTPRequestHead(version: version, method: method, uri: "/ws", headers: headers)
    }

    func accepted(_ request: HTTPRequestHead, _ configuration: WebSocketConfiguration = WebSocketConfiguration()) -> WebSocketUpgrade? {
        guard case .accept(let upgrade) = WebSocketHandshake.negotiate(request: request, configuration: configuration) else {
            return nil
        }
        return upgrade
    }

    func rejection(_ request: HTTPRequestHead) -> (status: HTTPResponseStatus, headers: HTTPHeaders, reason: String)? {
        guard case .reject(let status, let headers, let reason) =
            WebSocketHandshake.negotiate(request: request, configuration: WebSocketConfiguration())
        else { return nil }
        return (status, headers, reason)
    }

    @Test("The accept value of the RFC 6455 §1.3 example key is s3pPLMBiTxaQ9kYGzzhZRbK+xOo= (as in the RFC)")
    func acceptValueOfRFCExample() {
        #expect(WebSocketHandshake.acceptValue(forKey: Self.key) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    }

    @Test("A valid request is accepted with exactly Upgrade, Connection and Sec-WebSocket-Accept")
    func validRequestIsAccepted() throws {
        var configuration = WebSocketConfiguration()
        configuration.deflate = nil
        let upgrade = try #require(self.accepted(self.request(), configuration))
        #expect(upgrade.responseHeaders.map { "\($0.name): \($0.value)" } == [
            "Upgrade: websocket",
            "Connection: Upgrade",
            "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
        ])
        #expect(upgrade.subprotocol == nil)
        #expect(upgrade.deflate == nil)
    }

    @Test("Header tokens are matched case-insensitively and within comma lists")
    func tokensAreCaseInsensitive() {
        let request = self.request(replacing: ["Upgrade": "WebSocket", "Connection": "keep-alive, UPGRADE"])
        #expect(self.accepted(request) != nil)
    }

    @Test("A non-GET request is rejected with 400")
    func nonGetIsRejected() throws {
        let rejection = try #require(self.rejection(self.request(method: .POST)))
        #expect(rejection.status == .badRequest)
        #expect(rejection.reason == "method must be GET")
    }

    @Test("An HTTP/1.0 request is rejected with 400")
    func http10IsRejected() throws {
        let rejection = try #require(self.rejection(self.request(version: .http1_0)))
        #expect(rejection.status == .badRequest)
        #expect(rejection.reason == "HTTP/1.1 or higher required")
    }

    @Test("A missing or wrong Upgrade header is rejected with 400", arguments: [nil, "h2c"] as [String?])
    func badUpgradeIsRejected(value: String?) throws {
        let request = value.map { self.request(replacing: ["Upgrade": $0]) } ?? self.request(removing: ["Upgrade"])
        let rejection = try #require(self.rejection(request))
        #expect(rejection.status == .badRequest)
        #expect(rejection.reason == "Upgrade header must contain websocket")
    }

    @Test("A Connection header without the upgrade token is rejected with 400", arguments: [nil, "keep-alive", "upgraded"] as [String?])
    func badConnectionIsRejected(value: String?) throws {
        let request = value.map { self.request(replacing: ["Connection": $0]) } ?? self.request(removing: ["Connection"])
        let rejection = try #require(self.rejection(request))
        #expect(rejection.status == .badRequest)
        #expect(rejection.reason == "Connection header must contain upgrade")
    }

    @Test("A missing Sec-WebSocket-Key is rejected with 400")
    func missingKeyIsRejected() throws {
        let rejection = try #require(self.rejection(self.request(removing: ["Sec-WebSocket-Key"])))
        #expect(rejection.status == .badRequest)
        #expect(rejection.reason == "missing Sec-WebSocket-Key")
    }

    @Test(
        "A Sec-WebSocket-Key that is not base64 of 16 bytes is rejected with 400",
        arguments: ["", "dGhlIHNhbXBsZSBub25jZQ", "dGhlIHNhbXBsZSBub25jZQ=", "dGhlIHNhbXBsZSBub25jZSE=",
                    "dGhlIHNhbXBsZSBub25jZ*==", "dGhlIHNhbXBsZSBub25jZXh4eA=="]
    )
    func malformedKeyIsRejected(key: String) throws {
        let rejection = try #require(self.rejection(self.request(replacing: ["Sec-WebSocket-Key": key])))
        #expect(rejection.status == .badRequest)
        #expect(rejection.reason == "Sec-WebSocket-Key must be base64 of 16 bytes")
    }

    @Test("Two Sec-WebSocket-Key headers are rejected with 400")
    func duplicateKeyIsRejected() throws {
        let rejection = try #require(self.rejection(self.request(adding: [("Sec-WebSocket-Key", Self.key)])))
        #expect(rejection.status == .badRequest)
        #expect(rejection.reason == "more than one Sec-WebSocket-Key")
    }

    @Test("A missing Sec-WebSocket-Version is rejected with 426 and Sec-WebSocket-Version: 13")
    func missingVersionIs426() throws {
        let rejection = try #require(self.rejection(self.request(removing: ["Sec-WebSocket-Version"])))
        #expect(rejection.status == .upgradeRequired)
        #expect(rejection.headers["Sec-WebSocket-Version"] == ["13"])
        #expect(rejection.reason == "missing Sec-WebSocket-Version")
    }

    @Test("A wrong Sec-WebSocket-Version is rejected with 426 and Sec-WebSocket-Version: 13", arguments: ["8", "12", "14", "13, 8"])
    func wrongVersionIs426(version: String) throws {
        let rejection = try #require(self.rejection(self.request(replacing: ["Sec-WebSocket-Version": version])))
        #expect(rejection.status == .upgradeRequired)
        #expect(rejection.headers["Sec-WebSocket-Version"] == ["13"])
        #expect(rejection.reason == "unsupported Sec-WebSocket-Version")
    }

    @Test("The server's most preferred subprotocol among the client's offers is chosen")
    func subprotocolFollowsServerPreference() throws {
        var configuration = WebSocketConfiguration()
        configuration.subprotocols = ["v12.stomp", "v11.stomp", "v10.stomp"]
        let request = self.request(adding: [("Sec-WebSocket-Protocol", "v10.stomp, v11.stomp"), ("Sec-WebSocket-Protocol", "v12.stomp")])
        let upgrade = try #require(self.accepted(request, configuration))
        #expect(upgrade.subprotocol == "v12.stomp")
        #expect(upgrade.responseHeaders["Sec-WebSocket-Protocol"] == ["v12.stomp"])

        let older = try #require(self.accepted(self.request(adding: [("Sec-WebSocket-Protocol", "v10.stomp, v11.stomp")]), configuration))
        #expect(older.subprotocol == "v11.stomp")
    }

    @Test("No matching or no offered subprotocol is accepted without Sec-WebSocket-Protocol")
    func noSubprotocolMatch() throws {
        var configuration = WebSocketConfiguration()
        configuration.subprotocols = ["v12.stomp"]
        for request in [self.request(), self.request(adding: [("Sec-WebSocket-Protocol", "mqtt, V12.STOMP")])] {
            let upgrade = try #require(self.accepted(request, configuration))
            #expect(upgrade.subprotocol == nil)
            #expect(upgrade.responseHeaders["Sec-WebSocket-Protocol"].isEmpty)
        }
    }

    @Test("A permessage-deflate offer is answered in Sec-WebSocket-Extensions")
    func deflateIsNegotiated() throws {
        let request = self.request(adding: [("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits")])
        let upgrade = try #require(self.accepted(request))
        #expect(upgrade.deflate == NegotiatedDeflate())
        #expect(upgrade.responseHeaders["Sec-WebSocket-Extensions"] == ["permessage-deflate"])
    }

    @Test("Without a deflate configuration permessage-deflate is never negotiated")
    func deflateDisabled() throws {
        var configuration = WebSocketConfiguration()
        configuration.deflate = nil
        let request = self.request(adding: [("Sec-WebSocket-Extensions", "permessage-deflate")])
        let upgrade = try #require(self.accepted(request, configuration))
        #expect(upgrade.deflate == nil)
        #expect(upgrade.responseHeaders["Sec-WebSocket-Extensions"].isEmpty)
    }
}
