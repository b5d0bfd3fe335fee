import Testing
import StarlingSTOMP

@testable import StarlingServer

@Suite("Server metrics")
struct ServerMetricsTests {
    @Test("ERROR messages map to a fixed set of reasons, and the limit hit when there is one")
    func errorReasons() {
        let cases: [(String, ErrorReason, LimitName?)] = [
            ("authentication failed: wrong login or passcode", .auth, nil),
            ("authentication failed: too many failed logins from this address", .auth, .failedLoginLimit),
            ("access denied: 'bob' may not subscribe to '/topic/x'", .access, nil),
            ("token expired: refresh it with a SEND to /control/token before it expires", .token, nil),
            ("too many subscriptions on this connection (limit 2)", .limit, .maxSubscriptions),
            ("too many open transactions (limit 16)", .limit, .maxTransactions),
            ("slow consumer: outbound buffer limit exceeded", .slowConsumer, .maxPendingBytes),
            (STOMPParseError.bodyTooLarge(limit: 10).description, .limit, .maxBodySize),
            (STOMPParseError.tooManyHeaders(limit: 10).description, .limit, .maxHeaderCount),
            (STOMPParseError.headerLineTooLong(limit: 10).description, .limit, .maxHeaderLength),
            (STOMPParseError.invalidEscape("\\q").description, .protocol, nil),
            ("expected CONNECT or STOMP, got SEND", .protocol, nil),
        ]
        for (message, reason, limit) in cases {
            let classified = ErrorReason.classify(message)
            #expect(classified.0 == reason && classified.1 == limit, "\(message)")
        }
    }

    @Test("Connection kinds carry transport, tls and deflate labels, and a name for logs")
    func connectionKinds() {
        #expect(ConnectionKind(webSocket: true, tls: true, deflate: true) == .webSocketTLSDeflate)
        #expect(ConnectionKind(webSocket: false, tls: true, deflate: true) == .tcpTLS, "TCP has no deflate")
        let labels = ConnectionKind.webSocketDeflate.labels.map { "\($0.0)=\($0.1)" }
        #expect(labels == ["transport=ws", "tls=false", "deflate=true"])
        #expect(Set(ConnectionKind.allCases.map(\.name)).count == ConnectionKind.allCases.count)
        #expect(DestinationKind("/temp-queue/a") == .tempQueue && DestinationKind("/user/bob/queue/x") == .user)
        #expect(DestinationKind("/presence/lobby") == .presence && DestinationKind("/room/lobby") == .room)
    }
}
