import COpenSSL
import Foundation

/// A password stored as PBKDF2-HMAC-SHA256 (OpenSSL libcrypto): `pbkdf2-sha256$<iterations>$<salt>$<hash>`, salt and
/// hash in base64. What `starling passwd` writes and the users file holds (issue 9).
struct PasswordHash: Equatable, CustomStringConvertible {
    static let scheme = "pbkdf2-sha256"
    /// OWASP's 2023 figure for PBKDF2-HMAC-SHA256. A login costs this once per user and password per process:
    /// `UsersFileAuthenticator` remembers what it verified.
    static let defaultIterations = 600_000
    static let iterationRange = 1000...10_000_000

    let iterations: Int
    let salt: [UInt8]
    let hash: [UInt8]

    /// Hashes `password` with a fresh random 16-byte salt.
    static func make(password: String, iterations: Int = Self.defaultIterations) -> PasswordHash {
        var salt = [UInt8](repeating: 0, count: 16)
        precondition(RAND_bytes(&salt, Int32(salt.count)) == 1, "RAND_bytes failed")
        return PasswordHash(iterations: iterations, salt: salt, hash: Self.derive(password, salt: salt, iterations: iterations))
    }

    /// Parses the stored form; nil when it is not one.
    init?(_ text: Substring) {
        let parts = text.split(separator: "$", omittingEmptySubsequences: false)
        guard parts.count == 4, parts[0] == Self.scheme, let iterations = Int(parts[1]), Self.iterationRange.contains(iterations),
              let salt = Data(base64Encoded: String(parts[2])), salt.count >= 8,
              let hash = Data(base64Encoded: String(parts[3])), hash.count == 32
        else { return nil }
        self.init(iterations: iterations, salt: Array(salt), hash: Array(hash))
    }

    init(iterations: Int, salt: [UInt8], hash: [UInt8]) {
        self.iterations = iterations
        self.salt = salt
        self.hash = hash
    }

    var description: String {
        "\(Self.scheme)$\(self.iterations)$\(Data(self.salt).base64EncodedString())$\(Data(self.hash).base64EncodedString())"
    }

    /// True when `password` hashes to this (compared in constant time). Costs `iterations` HMACs: call it off the
    /// event loops.
    func matches(_ password: String) -> Bool {
        let candidate = Self.derive(password, salt: self.salt, iterations: self.iterations)
        return candidate.count == self.hash.count && CRYPTO_memcmp(candidate, self.hash, candidate.count) == 0
    }

    static func derive(_ password: String, salt: [UInt8], iterations: Int) -> [UInt8] {
        var output = [UInt8](repeating: 0, count: 32)
        let bytes = Array(password.utf8)
        let status = bytes.withUnsafeBufferPointer { passwordBytes in
            passwordBytes.withMemoryRebound(to: CChar.self) { passwordChars in
                PKCS5_PBKDF2_HMAC(
                    passwordChars.baseAddress, Int32(passwordChars.count), salt, Int32(salt.count), Int32(iterations), EVP_sha256(),
                    Int32(output.count), &output
                )
            }
        }
        precondition(status == 1, "PKCS5_PBKDF2_HMAC failed")
        return output
    }
}
