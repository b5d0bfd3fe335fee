import COpenSSL
import Foundation

/// Verifies JWT bearer tokens (RFC 7519) passed on CONNECT (issue 9): HS256 with a shared secret, RS256 and ES256
/// with a PEM public key, all through OpenSSL libcrypto. Checks `exp`, `nbf` (with a little leeway for clock
/// skew), `aud` and `iss` when configured, and maps a claim to the user name and one to the roles.
final class JWTVerifier: @unchecked Sendable {
    struct Settings: Sendable, Equatable {
        var secret: [UInt8]?
        /// PEM text of an RSA or EC (P-256) public key.
        var publicKeyPEM: String?
        var audience: String?
        var issuer: String?
        var userClaim = "sub"
        var rolesClaim = "roles"
        var leewaySeconds = 30.0
    }

    struct Claims: Equatable {
        var user: String
        var roles: [String]
        /// Seconds since 1970 when the token stops being valid, if it says.
        var expires: Double?
    }

    enum Failure: Error, Equatable, CustomStringConvertible {
        case malformed
        case unsupportedAlgorithm(String)
        case badSignature
        case expired
        case notYetValid
        case wrongAudience
        case wrongIssuer
        case noUser

        var description: String {
            switch self {
            case .malformed: "malformed token"
            case .unsupportedAlgorithm(let alg): "unsupported algorithm \(alg)"
            case .badSignature: "bad signature"
            case .expired: "token expired"
            case .notYetValid: "token not yet valid"
            case .wrongAudience: "wrong audience"
            case .wrongIssuer: "wrong issuer"
            case .noUser: "no user claim"
            }
        }
    }

    let settings: Settings
    /// The parsed public key; immutable after init and only read (EVP_PKEY is safe to share for verification).
    private let publicKey: OpaquePointer?

    init(_ settings: Settings) throws(ServerConfiguration.SettingError) {
        self.settings = settings
        if let pem = settings.publicKeyPEM {
            // A memory BIO reads the caller's bytes in place: they must outlive the read.
            let bytes = Array(pem.utf8)
            let key = bytes.withUnsafeBytes { buffer -> OpaquePointer? in
                let bio = BIO_new_mem_buf(buffer.baseAddress, Int32(buffer.count))
                defer { BIO_free(bio) }
                return PEM_read_bio_PUBKEY(bio, nil, nil, nil)
            }
            guard let key else {
                throw .init("auth: jwt-public-key-file is not a PEM public key (-----BEGIN PUBLIC KEY-----)")
            }
            self.publicKey = key
        } else {
            self.publicKey = nil
        }
        guard settings.secret != nil || self.publicKey != nil else { throw .init("auth: JWT needs jwt-secret or jwt-public-key-file") }
    }

    deinit {
        if let publicKey { EVP_PKEY_free(publicKey) }
    }

    /// True when `text` looks like a JWT (three base64url parts), so CONNECT's passcode is tried as one.
    static func looksLikeToken(_ text: String) -> Bool {
        text.utf8.count > 20 && text.split(separator: ".", omittingEmptySubsequences: false).count == 3 && text.hasPrefix("eyJ")
    }

    func verify(_ token: String, now: Double = Date().timeIntervalSince1970) throws(Failure) -> Claims {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let headerBytes = Self.base64URL(parts[0]), let payloadBytes = Self.base64URL(parts[1]),
              let signature = Self.base64URL(parts[2]),
              let header = (try? JSONSerialization.jsonObject(with: Data(headerBytes))) as? [String: Any],
              let claims = (try? JSONSerialization.jsonObject(with: Data(payloadBytes))) as? [String: Any],
              let algorithm = header["alg"] as? String
        else { throw .malformed }
        let signed = Array(token.utf8.prefix(parts[0].utf8.count + 1 + parts[1].utf8.count))
        switch algorithm {
        case "HS256":
            guard let secret = self.settings.secret, Self.hmacMatches(secret, signed, signature) else {
                throw self.settings.secret == nil ? .unsupportedAlgorithm(algorithm) : .badSignature
            }
        case "RS256", "ES256":
            guard let key = self.publicKey else { throw .unsupportedAlgorithm(algorithm) }
            let keyType = EVP_PKEY_get_base_id(key)
            guard (algorithm == "RS256" && keyType == EVP_PKEY_RSA) || (algorithm == "ES256" && keyType == EVP_PKEY_EC) else {
                throw .unsupportedAlgorithm(algorithm)
            }
            let der = algorithm == "ES256" ? Self.ecdsaDER(signature) : signature
            guard let der, Self.signatureMatches(key, signed, der) else { throw .badSignature }
        default:
            throw .unsupportedAlgorithm(algorithm)  // "none" included
        }
        let leeway = self.settings.leewaySeconds
        // RFC 7519 §4.1.4-5: NumericDate, a JSON number; anything else there is not a token we accept.
        for name in ["exp", "nbf"] where claims[name] != nil {
            guard !(claims[name] is String), !(claims[name] is Bool), claims[name] is NSNumber else { throw .malformed }
        }
        let expires = (claims["exp"] as? NSNumber)?.doubleValue
        if let expires, now > expires + leeway { throw .expired }
        if let notBefore = (claims["nbf"] as? NSNumber)?.doubleValue, now + leeway < notBefore { throw .notYetValid }
        if let audience = self.settings.audience {
            let audiences = (claims["aud"] as? [String]) ?? [(claims["aud"] as? String)].compactMap { $0 }
            guard audiences.contains(audience) else { throw .wrongAudience }
        }
        if let issuer = self.settings.issuer, claims["iss"] as? String != issuer { throw .wrongIssuer }
        guard let user = claims[self.settings.userClaim] as? String, !user.isEmpty else { throw .noUser }
        let roles = (claims[self.settings.rolesClaim] as? [String]) ?? ((claims[self.settings.rolesClaim] as? String).map { $0.split(separator: " ").map(String.init) } ?? [])
        return Claims(user: user, roles: roles, expires: expires)
    }

    private static func base64URL(_ part: Substring) -> [UInt8]? {
        var text = part.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while text.utf8.count % 4 != 0 { text += "=" }
        return Data(base64Encoded: text).map(Array.init)
    }

    private static func hmacMatches(_ secret: [UInt8], _ data: [UInt8], _ signature: [UInt8]) -> Bool {
        var output = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        guard HMAC(EVP_sha256(), secret, Int32(secret.count), data, data.count, &output, &length) != nil else { return false }
        return Int(length) == signature.count && CRYPTO_memcmp(output, signature, signature.count) == 0
    }

    private static func signatureMatches(_ key: OpaquePointer, _ data: [UInt8], _ signature: [UInt8]) -> Bool {
        guard let context = EVP_MD_CTX_new() else { return false }
        defer { EVP_MD_CTX_free(context) }
        guard EVP_DigestVerifyInit(context, nil, EVP_sha256(), nil, key) == 1 else { return false }
        return EVP_DigestVerify(context, signature, signature.count, data, data.count) == 1
    }

    /// JWS ES256 signatures are r || s (32 bytes each); OpenSSL verifies DER `ECDSA-Sig-Value`.
    private static func ecdsaDER(_ raw: [UInt8]) -> [UInt8]? {
        guard raw.count == 64, let signature = ECDSA_SIG_new() else { return nil }
        defer { ECDSA_SIG_free(signature) }
        let r = BN_bin2bn(raw, 32, nil)
        let s = raw.withUnsafeBufferPointer { BN_bin2bn($0.baseAddress! + 32, 32, nil) }
        guard let r, let s, ECDSA_SIG_set0(signature, r, s) == 1 else { return nil }
        var output: UnsafeMutablePointer<UInt8>?
        let length = i2d_ECDSA_SIG(signature, &output)
        guard length > 0, let output else { return nil }
        defer { CRYPTO_free(output, #file, #line) }
        return Array(UnsafeBufferPointer(start: output, count: Int(length)))
    }
}
