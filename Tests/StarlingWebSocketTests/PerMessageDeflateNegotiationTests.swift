import Testing

@testable import StarlingWebSocket

@Suite("permessage-deflate negotiation (RFC 7692 §7.1)")
struct PerMessageDeflateNegotiationTests {
    func negotiate(
        _ offers: [String],
        _ configure: (inout PerMessageDeflateConfiguration) -> Void = { _ in }
    ) -> (NegotiatedDeflate, String)? {
        var configuration = PerMessageDeflateConfiguration()
        configure(&configuration)
        return PerMessageDeflateNegotiation.negotiate(offers: offers, configuration: configuration).map { ($0.0, $0.1) }
    }

    @Test("A bare offer is accepted with defaults and a bare response")
    func bareOffer() throws {
        let (negotiated, response) = try #require(self.negotiate(["permessage-deflate"]))
        #expect(negotiated == NegotiatedDeflate(serverMaxWindowBits: 15, clientMaxWindowBits: 15))
        #expect(response == "permessage-deflate")
    }

    @Test("server_no_context_takeover is echoed and applied")
    func serverNoContextTakeover() throws {
        let (negotiated, response) = try #require(self.negotiate(["permessage-deflate; server_no_context_takeover"]))
        #expect(negotiated.serverNoContextTakeover)
        #expect(!negotiated.clientNoContextTakeover)
        #expect(response == "permessage-deflate; server_no_context_takeover")
    }

    @Test("server_no_context_takeover is sent unasked when configured")
    func configuredServerNoContextTakeover() throws {
        let (negotiated, response) = try #require(self.negotiate(["permessage-deflate"]) { $0.serverNoContextTakeover = true })
        #expect(negotiated.serverNoContextTakeover)
        #expect(response == "permessage-deflate; server_no_context_takeover")
    }

    @Test("client_no_context_takeover is sent unasked when configured (RFC 7692 §7.1.1.2)")
    func clientNoContextTakeoverConfigured() throws {
        let (negotiated, response) = try #require(self.negotiate(["permessage-deflate; client_max_window_bits"]) {
            $0.clientNoContextTakeover = true
            $0.serverNoContextTakeover = true
        })
        #expect(negotiated.clientNoContextTakeover && negotiated.serverNoContextTakeover)
        #expect(response == "permessage-deflate; server_no_context_takeover; client_no_context_takeover")
    }

    @Test("client_no_context_takeover is echoed and applied")
    func clientNoContextTakeover() throws {
        let (negotiated, response) = try #require(self.negotiate(["permessage-deflate;client_no_context_takeover"]))
        #expect(negotiated.clientNoContextTakeover)
        #expect(response == "permessage-deflate; client_no_context_takeover")
    }

    @Test("server_max_window_bits=N limits our window and is answered with the value used")
    func serverMaxWindowBits() throws {
        let (negotiated, response) = try #require(self.negotiate(["permessage-deflate; server_max_window_bits=10"]))
        #expect(negotiated.serverMaxWindowBits == 10)
        #expect(response == "permessage-deflate; server_max_window_bits=10")
        // We may answer with less than offered.
        let (smaller, smallerResponse) = try #require(
            self.negotiate(["permessage-deflate; server_max_window_bits=12"]) { $0.serverMaxWindowBits = 9 }
        )
        #expect(smaller.serverMaxWindowBits == 9)
        #expect(smallerResponse == "permessage-deflate; server_max_window_bits=9")
    }

    @Test("A configured server window below 15 is announced even when not offered")
    func configuredServerWindowIsAnnounced() throws {
        let (negotiated, response) = try #require(self.negotiate(["permessage-deflate"]) { $0.serverMaxWindowBits = 11 })
        #expect(negotiated.serverMaxWindowBits == 11)
        #expect(response == "permessage-deflate; server_max_window_bits=11")
    }

    @Test("client_max_window_bits without a value lets us limit the client to our configured window")
    func clientMaxWindowBitsWithoutValue() throws {
        let (negotiated, response) = try #require(self.negotiate(["permessage-deflate; client_max_window_bits"]))
        #expect(negotiated.clientMaxWindowBits == 15)
        #expect(response == "permessage-deflate")
        let (limited, limitedResponse) = try #require(
            self.negotiate(["permessage-deflate; client_max_window_bits"]) { $0.clientMaxWindowBits = 10 }
        )
        #expect(limited.clientMaxWindowBits == 10)
        #expect(limitedResponse == "permessage-deflate; client_max_window_bits=10")
    }

    @Test("client_max_window_bits=N is honoured, including 8 and a quoted value")
    func clientMaxWindowBitsWithValue() throws {
        let (negotiated, response) = try #require(self.negotiate(["permessage-deflate; client_max_window_bits=\"12\""]))
        #expect(negotiated.clientMaxWindowBits == 12)
        #expect(response == "permessage-deflate; client_max_window_bits=12")
        let (eight, eightResponse) = try #require(self.negotiate(["permessage-deflate; client_max_window_bits=8"]))
        #expect(eight.clientMaxWindowBits == 8)
        #expect(eightResponse == "permessage-deflate; client_max_window_bits=8")
    }

    @Test("An offer without client_max_window_bits is declined when we accept less than 15 bits from clients")
    func clientWindowLimitWithoutSupportIsDeclined() {
        #expect(self.negotiate(["permessage-deflate"]) { $0.clientMaxWindowBits = 12 } == nil)
    }

    @Test("All parameters together produce one response in a fixed order")
    func allParameters() throws {
        let offer = "permessage-deflate; client_max_window_bits=11; server_max_window_bits=13; client_no_context_takeover; server_no_context_takeover"
        let (negotiated, response) = try #require(self.negotiate([offer]))
        #expect(negotiated == NegotiatedDeflate(
            serverNoContextTakeover: true, clientNoContextTakeover: true, serverMaxWindowBits: 13, clientMaxWindowBits: 11
        ))
        #expect(response == "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=13; client_max_window_bits=11")
    }

    @Test(
        "Offers with unknown, duplicate or invalid parameters are declined",
        arguments: [
            "permessage-deflate; foo",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; client_no_context_takeover=yes",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; client_max_window_bits=abc",
            "permessage-deflate; client_max_window_bits=1; client_max_window_bits=9",
            "x-webkit-deflate-frame",
        ]
    )
    func invalidOffersAreDeclined(offer: String) {
        #expect(self.negotiate([offer]) == nil)
    }

    @Test("server_max_window_bits=8 is declined because zlib cannot compress with an 8-bit window")
    func serverWindowOf8IsDeclined() {
        #expect(self.negotiate(["permessage-deflate; server_max_window_bits=8"]) == nil)
    }

    @Test("A declined first offer falls back to the next acceptable one, across header lines")
    func fallbackToSecondOffer() throws {
        let (negotiated, response) = try #require(self.negotiate([
            "foo, permessage-deflate; server_max_window_bits=8",
            "permessage-deflate; server_max_window_bits=10, permessage-deflate",
        ]))
        #expect(negotiated.serverMaxWindowBits == 10)
        #expect(response == "permessage-deflate; server_max_window_bits=10")
    }

    @Test("A malformed header negotiates nothing and is not an error", arguments: ["permessage-deflate;", "; x", "permessage-deflate; a=\"open"])
    func malformedHeader(header: String) {
        #expect(self.negotiate([header]) == nil)
    }
}
