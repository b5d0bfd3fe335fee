import COpenSSL
import Foundation
import NIOConcurrencyHelpers

/// A user CONNECT proved to be.
struct AuthenticatedUser: Sendable, Equatable {
    var name: String
    var roles: [String] = []
    /// When a token's `exp` ends the session (seconds since 1970); nil = never.
    var expires: Double?
}

/// The server's authenticator: JWT bearer tokens (a passcode that looks like one, or CONNECT `authorization:
/// Bearer ...`) when configured, else the users file; anonymous sessions when allowed.
final class ServerAuthenticator: Authenticator {
    let users: UsersFileAuthenticator?
    let tokens: JWTVerifier?
    private let allowsAnonymous: Bool

    init(users: UsersFileAuthenticator?, tokens: JWTVerifier?, allowsAnonymous: Bool) {
        self.users = users
        self.tokens = tokens
        self.allowsAnonymous = allowsAnonymous
    }

    func authenticate(login: String?, passcode: String?) -> AuthenticatedUser? {
        if self.tokens != nil, let passcode, JWTVerifier.looksLikeToken(passcode) {
            guard case .success(let user) = self.verify(token: passcode) else { return nil }
            // A login, when given, must name the token's user.
            if let login, !login.isEmpty, login != user.name { return nil }
            return user
        }
        if let users { return users.authenticate(login: login, passcode: passcode) }
        let isAnonymous = (login ?? "").isEmpty && (passcode ?? "").isEmpty
        return isAnonymous && self.allowsAnonymous ? AuthenticatedUser(name: "") : nil
    }

    /// A token's user, or why it is refused; `.failure(.unsupportedAlgorithm)` when tokens are not configured.
    func verify(token: String) -> Result<AuthenticatedUser, JWTVerifier.Failure> {
        guard let tokens = self.tokens else { return .failure(.unsupportedAlgorithm("(JWT not configured)")) }
        do {
            let claims = try tokens.verify(token)
            // The session lasts as long as the token is accepted: until `exp` plus the leeway.
            let expires = claims.expires.map { $0 + tokens.settings.leewaySeconds }
            return .success(AuthenticatedUser(name: claims.user, roles: claims.roles, expires: expires))
        } catch {
            return .failure(error)
        }
    }
}

/// Checks CONNECT's `login` and `passcode` (issue 9). `authenticate` may block (password hashing): the connection
/// runs it off the event loops.
protocol Authenticator: Sendable {
    /// The user, or nil when the credentials are wrong, the user unknown or a login is needed and missing (one
    /// answer for all, so a client cannot tell which).
    func authenticate(login: String?, passcode: String?) -> AuthenticatedUser?
}

/// Users from a users file (`name:pbkdf2-sha256$...[:role,role]` per line, `#` comments), made by `starling passwd`.
///
/// PBKDF2 is slow on purpose (~0.3 s at 600,000 iterations); a reconnect storm must not pay it per connection, so a
/// verified login and passcode are remembered as a keyed SHA-256 digest (never the passcode) and later logins with
/// them cost one digest. An unknown user costs a full hash too, so timing does not tell whether a user exists.
final class UsersFileAuthenticator: Authenticator {
    private let users: [String: (hash: PasswordHash, roles: [String])]
    /// CONNECT without `login` is accepted as anonymous (`[auth] anonymous = true`).
    private let allowsAnonymous: Bool
    private let verified = NIOLockedValueBox<Set<Data>>([])
    private let digestKey: [UInt8]
    private static let maxRemembered = 100_000
    /// Checked for unknown users, so that they cost what a known one costs: as many iterations as the file's
    /// costliest entry.
    private let decoy: PasswordHash

    init(users: [String: (hash: PasswordHash, roles: [String])], allowsAnonymous: Bool) {
        self.users = users
        self.allowsAnonymous = allowsAnonymous
        self.decoy = PasswordHash.make(password: "decoy", iterations: users.values.map(\.hash.iterations).max() ?? PasswordHash.defaultIterations)
        var key = [UInt8](repeating: 0, count: 32)
        precondition(RAND_bytes(&key, Int32(key.count)) == 1, "RAND_bytes failed")
        self.digestKey = key
    }

    /// Reads a users file. Throws naming the file and line.
    convenience init(file: String, allowsAnonymous: Bool) throws(ServerConfiguration.SettingError) {
        let text: String
        do {
            text = try String(contentsOfFile: file, encoding: .utf8)
        } catch {
            throw .init("auth: cannot read users-file '\(file)': \(error.localizedDescription)")
        }
        self.init(users: try Self.parse(text, file: file), allowsAnonymous: allowsAnonymous)
    }

    static func parse(_ text: String, file: String) throws(ServerConfiguration.SettingError) -> [String: (hash: PasswordHash, roles: [String])] {
        var users: [String: (hash: PasswordHash, roles: [String])] = [:]
        for (number, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = rawLine.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            let fields = line.split(separator: ":", omittingEmptySubsequences: false)
            guard (2...3).contains(fields.count), !fields[0].isEmpty, let hash = PasswordHash(fields[1]) else {
                throw .init("\(file):\(number + 1): expected 'user:\(PasswordHash.scheme)$...[:roles]' (made by starling passwd)")
            }
            guard users[String(fields[0])] == nil else { throw .init("\(file):\(number + 1): user '\(fields[0])' appears twice") }
            let roles = fields.count == 3 ? fields[2].split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } : []
            users[String(fields[0])] = (hash, roles.filter { !$0.isEmpty })
        }
        return users
    }

    var userCount: Int { self.users.count }

    func authenticate(login: String?, passcode: String?) -> AuthenticatedUser? {
        guard let login, !login.isEmpty else {
            return self.allowsAnonymous && (passcode ?? "").isEmpty ? AuthenticatedUser(name: "") : nil
        }
        let passcode = passcode ?? ""
        let digest = self.digest(login, passcode)
        guard let user = self.users[login] else {
            _ = self.decoy.matches(passcode)
            return nil
        }
        if self.verified.withLockedValue({ $0.contains(digest) }) { return AuthenticatedUser(name: login, roles: user.roles) }
        guard user.hash.matches(passcode) else { return nil }
        self.verified.withLockedValue { remembered in
            if remembered.count >= Self.maxRemembered { remembered.removeAll() }
            remembered.insert(digest)
        }
        return AuthenticatedUser(name: login, roles: user.roles)
    }

    /// SHA-256 of the process's random key, the login and the passcode.
    private func digest(_ login: String, _ passcode: String) -> Data {
        var input = self.digestKey
        input.append(contentsOf: login.utf8)
        input.append(0)
        input.append(contentsOf: passcode.utf8)
        var output = [UInt8](repeating: 0, count: Int(SHA256_DIGEST_LENGTH))
        _ = SHA256(input, input.count, &output)
        return Data(output)
    }
}

/// Failed logins per client address: past `limit` within `window` seconds, CONNECTs from it are refused without a
/// check until the window passes (issue 9: "rate-limited per address").
final class FailedLoginLimiter: Sendable {
    private let limit: Int
    private let window: Double
    private let failures = NIOLockedValueBox<[String: (count: Int, since: Double)]>([:])
    private static let maxAddresses = 100_000

    init(limit: Int = 5, windowSeconds: Double = 60) {
        self.limit = limit
        self.window = windowSeconds
    }

    /// True when `address` may try to log in now.
    func allows(_ address: String, now: Double = Date().timeIntervalSince1970) -> Bool {
        self.failures.withLockedValue { failures in
            guard let entry = failures[address] else { return true }
            if now - entry.since >= self.window {
                failures[address] = nil
                return true
            }
            return entry.count < self.limit
        }
    }

    func recordFailure(_ address: String, now: Double = Date().timeIntervalSince1970) {
        self.failures.withLockedValue { failures in
            if failures.count >= Self.maxAddresses { failures = failures.filter { now - $0.value.since < self.window } }
            if let entry = failures[address], now - entry.since < self.window {
                failures[address] = (entry.count + 1, entry.since)
            } else {
                failures[address] = (1, now)
            }
        }
    }
}

/// `starling passwd`: adds or replaces a user in a users file.
public enum UsersFile {
    /// Sets `user`'s password (and roles) in `file`, creating it; other lines stay as they are.
    public static func setPassword(file: String, user: String, password: String, roles: [String], iterations: Int?) throws {
        guard !user.isEmpty, !user.contains(":"), !user.contains("\n") else {
            throw ServerConfiguration.SettingError("a user name must be non-empty, without ':' or newlines")
        }
        guard !password.isEmpty else { throw ServerConfiguration.SettingError("the password is empty") }
        guard roles.allSatisfy({ !$0.isEmpty && !$0.contains(":") && !$0.contains(",") }) else {
            throw ServerConfiguration.SettingError("a role must be non-empty, without ':' or ','")
        }
        let rounds = iterations ?? PasswordHash.defaultIterations
        guard PasswordHash.iterationRange.contains(rounds) else {
            throw ServerConfiguration.SettingError("iterations must be \(PasswordHash.iterationRange.lowerBound)...\(PasswordHash.iterationRange.upperBound)")
        }
        let existing = (try? String(contentsOfFile: file, encoding: .utf8)) ?? ""
        var lines = existing.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        if lines.last == "" { lines.removeLast() }
        let entry = "\(user):\(PasswordHash.make(password: password, iterations: rounds))" + (roles.isEmpty ? "" : ":" + roles.joined(separator: ","))
        if let index = lines.firstIndex(where: { $0.hasPrefix(user + ":") }) {
            lines[index] = entry
        } else {
            lines.append(entry)
        }
        let text = lines.joined(separator: "\n") + "\n"
        // Written beside the old file and renamed over it, readable by the owner only.
        let temporary = file + ".tmp"
        guard FileManager.default.createFile(atPath: temporary, contents: Data(text.utf8), attributes: [.posixPermissions: 0o600]) else {
            throw ServerConfiguration.SettingError("cannot write '\(temporary)'")
        }
        if rename(temporary, file) != 0 { throw ServerConfiguration.SettingError("cannot replace '\(file)': \(String(cString: strerror(errno)))") }
    }
}
