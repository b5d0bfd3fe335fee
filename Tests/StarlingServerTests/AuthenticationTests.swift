import Foundation
import StarlingBroker
import Testing
@testable import StarlingServer

@Suite("Authentication")
struct AuthenticationTests {
    @Test("PBKDF2-HMAC-SHA256 gives RFC 7914's test vector, and a stored hash round-trips and checks passwords")
    func passwordHash() throws {
        let derived = PasswordHash.derive("passwd", salt: Array("salt".utf8), iterations: 1)
        #expect(derived.map { String(format: "%02x", $0) }.joined() == "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc")
        let hash = PasswordHash.make(password: "s3cret", iterations: 1000)
        let parsed = try #require(PasswordHash(Substring(hash.description)))
        #expect(parsed == hash && parsed.matches("s3cret") && !parsed.matches("s3cret "))
        #expect(PasswordHash.make(password: "s3cret", iterations: 1000).salt != hash.salt, "a fresh salt each time")
        for bad in ["", "md5$1000$c2FsdHNhbHQ=$AAAA", "pbkdf2-sha256$10$c2FsdHNhbHQ=$" + hash.description.split(separator: "$")[3], "pbkdf2-sha256$1000$c2FsdHNhbHQ=$AAAA"] {
            #expect(PasswordHash(Substring(bad)) == nil, "\(bad)")
        }
    }

    @Test("A users file gives users with roles; wrong logins, unknown users and missing logins all fail alike")
    func usersFile() throws {
        let alice = PasswordHash.make(password: "a", iterations: 1000)
        let text = "# users\nalice:\(alice):admin, trader\n\nbob:\(PasswordHash.make(password: "b", iterations: 1000))\n"
        let authenticator = UsersFileAuthenticator(users: try UsersFileAuthenticator.parse(text, file: "u"), allowsAnonymous: false)
        #expect(authenticator.authenticate(login: "alice", passcode: "a") == AuthenticatedUser(name: "alice", roles: ["admin", "trader"]))
        #expect(authenticator.authenticate(login: "alice", passcode: "a")?.name == "alice", "remembered")
        #expect(authenticator.authenticate(login: "bob", passcode: "b") == AuthenticatedUser(name: "bob"))
        #expect(authenticator.authenticate(login: "alice", passcode: "b") == nil)
        #expect(authenticator.authenticate(login: "carol", passcode: "a") == nil)
        #expect(authenticator.authenticate(login: nil, passcode: nil) == nil)
        let open = UsersFileAuthenticator(users: [:], allowsAnonymous: true)
        #expect(open.authenticate(login: nil, passcode: nil) == AuthenticatedUser(name: ""))
        #expect(open.authenticate(login: "x", passcode: "y") == nil, "anonymous is no login, not any login")

        for (bad, message) in [
            ("alice\n", "u:1: expected 'user:pbkdf2-sha256$"), ("alice:nothash\n", "u:1:"), ("\nalice:\(alice)\nalice:\(alice)\n", "u:3: user 'alice' appears twice"),
        ] {
            #expect(throws: ServerConfiguration.SettingError.self) { _ = try UsersFileAuthenticator.parse(bad, file: "u") }
            do {
                _ = try UsersFileAuthenticator.parse(bad, file: "u")
            } catch {
                #expect(error.description.hasPrefix(message), "\(error.description)")
            }
        }
    }

    @Test("ERROR messages quote a client's control characters as \\xNN")
    func printableErrors() {
        #expect(STOMPConnection.printable("'/topic/a\u{0}' bad\u{1B}[2J") == "'/topic/a\\x00' bad\\x1B[2J")
        #expect(STOMPConnection.printable("plain é") == "plain é")
    }

    @Test("Failed logins are limited per address within a window")
    func failedLoginLimiter() {
        let limiter = FailedLoginLimiter(limit: 3, windowSeconds: 60)
        for _ in 0..<3 {
            #expect(limiter.allows("a", now: 100))
            limiter.recordFailure("a", now: 100)
        }
        #expect(!limiter.allows("a", now: 159))
        #expect(limiter.allows("b", now: 159), "per address")
        #expect(limiter.allows("a", now: 160), "the window passed")
    }

    @Test("[auth] takes users-file and anonymous; anything else names the line")
    func authTable() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("auth-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        func resolve(_ text: String) throws -> ServerConfiguration {
            let file = directory.appendingPathComponent("c.toml").path
            try text.write(toFile: file, atomically: true, encoding: .utf8)
            return try ServerConfiguration.resolve(flags: [:], environment: [:], configFile: file).0
        }
        #expect(try resolve("[auth]\nusers-file = \"u.txt\"\n").auth?.usersFile == "u.txt")
        #expect(try resolve("port = 1\n[auth]\nanonymous = true\n").auth?.anonymous == true)
        #expect(try resolve("port = 1\n").auth == nil)
        for (text, message) in [
            ("[auth]\ncolour = 1\n", ":2: unknown [auth] key 'colour'"), ("[auth]\nanonymous = yes\n", ":2: anonymous: expected true or false"),
            ("[auth]\n", ":1: [auth] needs users-file"), ("[auth]\nanonymous = true\n[auth]\n", ":3: [auth] appears twice"),
        ] {
            do {
                _ = try resolve(text)
                Issue.record("expected an error for \(text)")
            } catch let error as ServerConfiguration.SettingError {
                #expect(error.description.contains(message), "\(error.description)")
            }
        }
        var open = ServerConfiguration()
        open.host = "0.0.0.0"
        #expect(throws: StarlingServer.StartError.self) { _ = try StarlingServer.makeAuthenticator(open) }
        open.auth = ServerConfiguration.Auth()
        open.auth?.anonymous = true
        #expect(try StarlingServer.makeAuthenticator(open) == nil, "explicitly open: starts, checks nothing")
        var exposedTLS = ServerConfiguration()
        exposedTLS.tls = ServerConfiguration.TLS(certificateFile: "c", keyFile: "k")
        #expect(try StarlingServer.makeAuthenticator(exposedTLS) == nil, "TLS on the top-level loopback host")
        exposedTLS.tls?.host = "0.0.0.0"
        #expect(throws: StarlingServer.StartError.self, "TLS listeners facing the network need [auth] too") {
            _ = try StarlingServer.makeAuthenticator(exposedTLS)
        }
        #expect(ServerConfiguration.isLoopback("127.0.0.1") && ServerConfiguration.isLoopback("::1") && !ServerConfiguration.isLoopback("0.0.0.0"))
    }
}

@Suite("Access control")
struct AccessControlTests {
    private func pattern(_ text: String) -> DestinationPattern { DestinationPattern(text)! }

    @Test("A pattern covers another when it matches all the other can; overlaps when they share a destination")
    func coversAndOverlaps() {
        let cases: [(String, String, covers: Bool, overlaps: Bool)] = [
            ("/topic/a.#", "/topic/a.b", true, true), ("/topic/a.#", "/topic/a.*", true, true), ("/topic/a.#", "/topic/a.b.#", true, true),
            ("/topic/a.*", "/topic/a.#", false, true), ("/topic/a.*", "/topic/a.b", true, true), ("/topic/a.b", "/topic/a.*", false, true),
            ("/topic/#", "/topic/x.#.y", true, true), ("/topic/a.#", "/topic/b.#", false, false), ("/topic/a.*.c", "/topic/*.b.*", false, true),
            ("/topic/a.#", "/queue/a.b", false, false), ("/topic/#.z", "/topic/a.#", false, true), ("/topic/a.b", "/topic/a.b", true, true),
            ("/topic/a.b", "/topic/a.b.c", false, false), ("/topic/#", "/topic/#", true, true),
        ]
        for (first, second, covers, overlaps) in cases {
            #expect(self.pattern(first).covers(self.pattern(second)) == covers, "\(first) covers \(second)")
            #expect(self.pattern(first).overlaps(self.pattern(second)) == overlaps, "\(first) overlaps \(second)")
            #expect(self.pattern(second).overlaps(self.pattern(first)) == overlaps, "overlap is symmetric: \(second), \(first)")
        }
        // A client's pattern full of `#` costs O(n^2), not 2^n.
        let hashes = DestinationPattern("/topic/" + Array(repeating: "#", count: 2000).joined(separator: ".") + ".x")!
        #expect(!self.pattern("/topic/a.*").covers(hashes) && self.pattern("/topic/#").covers(hashes))
    }

    @Test("The first rule concerning a destination decides, by user, role or anyone; wildcards must stay inside it")
    func rules() {
        let access = AccessControl(rules: [
            AccessRule(pattern: self.pattern("/topic/prices.secret.#"), subscribe: [.role("admin")]),
            AccessRule(pattern: self.pattern("/topic/prices.#"), subscribe: [.anyone], send: [.role("feed"), .user("alice")]),
            AccessRule(pattern: self.pattern("/room/#"), subscribe: [.anyone], send: [.anyone]),
            AccessRule(pattern: self.pattern("/user/#"), send: [.anyone]),
        ])
        #expect(access.allows(.subscribe, "/topic/prices.aapl", user: nil, roles: []))
        #expect(!access.allows(.send, "/topic/prices.aapl", user: "bob", roles: []))
        #expect(access.allows(.send, "/topic/prices.aapl", user: "bob", roles: ["feed"]))
        #expect(access.allows(.send, "/topic/prices.aapl", user: "alice", roles: []))
        #expect(!access.allows(.subscribe, "/topic/prices.secret.x", user: "bob", roles: []))
        #expect(access.allows(.subscribe, "/topic/prices.secret.x", user: "bob", roles: ["admin"]))
        #expect(!access.allows(.subscribe, "/topic/prices.#", user: "bob", roles: []), "the wildcard reaches into the secret ones")
        #expect(!access.allows(.subscribe, "/topic/#", user: "bob", roles: ["admin"]), "and past every rule")
        #expect(!access.allows(.subscribe, "/topic/prices.*", user: "bob", roles: []), "prices.* matches /topic/prices.secret")
        #expect(access.allows(.subscribe, "/topic/prices.eu.*", user: "bob", roles: []), "inside the prices rule only")
        #expect(!access.allows(.subscribe, "/topic/news", user: "bob", roles: ["admin"]), "no rule: denied")
        #expect(access.allows(.subscribe, "/presence/lobby", user: nil, roles: []), "presence follows its room")
        #expect(access.allows(.subscribe, "/user/queue/inbox", user: "bob", roles: []), "one's own /user/ destinations")
        #expect(access.allows(.send, "/user/alice/queue/inbox", user: "bob", roles: []))
        #expect(access.allows(.send, "/temp-queue/replies", user: nil, roles: []), "temporary queues are one's own")
        #expect(!access.allows(.send, "/queue/orders", user: "bob", roles: ["admin"]))
    }
}

@Suite("JWT")
struct JWTTests {
    /// jwt.io's HS256 example (secret "your-256-bit-secret").
    static let example = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"

    private func verifier(_ secret: String = "your-256-bit-secret", audience: String? = nil) throws -> JWTVerifier {
        var settings = JWTVerifier.Settings()
        settings.secret = Array(secret.utf8)
        settings.audience = audience
        return try JWTVerifier(settings)
    }

    @Test("HS256: a good signature gives the sub claim; a wrong secret, a tampered payload, alg none and a wanted audience fail")
    func hs256() throws {
        #expect(try self.verifier().verify(Self.example) == JWTVerifier.Claims(user: "1234567890", roles: [], expires: nil))
        #expect(throws: JWTVerifier.Failure.badSignature) { try self.verifier("another-secret").verify(Self.example) }
        let parts = Self.example.split(separator: ".")
        let tampered = "\(parts[0]).eyJzdWIiOiJhZG1pbiJ9.\(parts[2])"
        #expect(throws: JWTVerifier.Failure.badSignature) { try self.verifier().verify(tampered) }
        let none = "eyJhbGciOiJub25lIn0.\(parts[1])."
        #expect(throws: JWTVerifier.Failure.unsupportedAlgorithm("none")) { try self.verifier().verify(none) }
        #expect(throws: JWTVerifier.Failure.malformed) { try self.verifier().verify("a.b") }
        #expect(throws: JWTVerifier.Failure.wrongAudience) { try self.verifier(audience: "starling").verify(Self.example) }
        #expect(JWTVerifier.looksLikeToken(Self.example) && !JWTVerifier.looksLikeToken("s3cret"))
        // {"sub":"x","exp":"1"} signed with the secret: a string exp is not a NumericDate.
        #expect(throws: JWTVerifier.Failure.malformed) {
            try self.verifier().verify("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ4IiwiZXhwIjoiMSJ9.kes_9alRP6c6DMqLKWz_djrFsYoHM4HbrxDcxgf_iGQ")
        }
    }
}
