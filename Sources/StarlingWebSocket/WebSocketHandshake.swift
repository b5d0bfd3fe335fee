import COpenSSL
import NIOHTTP1

/// The server's opening handshake (RFC 6455 §4.2).
public enum WebSocketHandshake {
    /// RFC 6455 §1.3: the GUID appended to the client's key.
    static let magicGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    /// `base64(SHA-1(key + GUID))`, the `Sec-WebSocket-Accept` value (RFC 6455 §4.2.2 item 5.4), computed with
    /// OpenSSL's EVP interface.
    public static func acceptValue(forKey key: String) -> String {
        var input = Array(key.utf8)
        input.append(contentsOf: self.magicGUID.utf8)
        var digest = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var digestLength: UInt32 = 0
        let ok = EVP_Digest(input, input.count, &digest, &digestLength, EVP_sha1(), nil)
        precondition(ok == 1 && digestLength == 20, "EVP_Digest(SHA-1) failed")
        // EVP_EncodeBlock writes 4 * ceil(n / 3) characters plus a NUL: 28 + 1 for a 20-byte digest.
        var encoded = [UInt8](repeating: 0, count: 32)
        let written = EVP_EncodeBlock(&encoded, digest, Int32(digestLength))
        return String(decoding: encoded[0..<Int(written)], as: UTF8.self)
    }

    /// Validates an upgrade request (RFC 6455 §4.2.1) and negotiates subprotocol and permessage-deflate.
    ///
    /// - Wrong or missing `Sec-WebSocket-Version` -> 426 with `Sec-WebSocket-Version: 13` (§4.2.2 item 4);
    ///   any other fault -> 400. `reason` names the fault.
    /// - Subprotocol: the first entry of `configuration.subprotocols` the client offered (server preference);
    ///   no match means no `Sec-WebSocket-Protocol` header, and the upgrade is still accepted.
    /// - permessage-deflate: see `PerMessageDeflateNegotiation`; never a reason to reject.
    public static func negotiate(request: HTTPRequestHead, configuration: WebSocketConfiguration) -> WebSocketHandshakeResult {
        let headers = request.headers
        // §4.2.1 item 1: "An HTTP/1.1 or higher GET request".
        guard request.method == .GET else {
            return self.badRequest("method must be GET")
        }
        guard request.version.major > 1 || (request.version.major == 1 && request.version.minor >= 1) else {
            return self.badRequest("HTTP/1.1 or higher required")
        }
        // §4.2.1 items 3 and 4: tokens compared ASCII case-insensitively.
        guard self.containsToken("websocket", in: headers[canonicalForm: "Upgrade"]) else {
            return self.badRequest("Upgrade header must contain websocket")
        }
        guard self.containsToken("upgrade", in: headers[canonicalForm: "Connection"]) else {
            return self.badRequest("Connection header must contain upgrade")
        }
        // §4.2.1 item 6 and §4.4: we speak version 13 only and say so.
        let versions = headers["Sec-WebSocket-Version"]
        guard versions.count == 1, self.trimmed(versions[0]) == "13" else {
            var responseHeaders = HTTPHeaders()
            responseHeaders.add(name: "Sec-WebSocket-Version", value: "13")
            return .reject(
                status: .upgradeRequired, headers: responseHeaders,
                reason: versions.isEmpty ? "missing Sec-WebSocket-Version" : "unsupported Sec-WebSocket-Version"
            )
        }
        // §4.2.1 item 5: a base64 value that decodes to 16 bytes.
        let keys = headers["Sec-WebSocket-Key"]
        guard keys.count == 1 else {
            return self.badRequest(keys.isEmpty ? "missing Sec-WebSocket-Key" : "more than one Sec-WebSocket-Key")
        }
        let key = self.trimmed(keys[0])
        guard self.isValidKey(key) else {
            return self.badRequest("Sec-WebSocket-Key must be base64 of 16 bytes")
        }

        // §10.2: the server decides which browser origins it serves (cross-site WebSocket hijacking).
        if !configuration.allowedOrigins.isEmpty, let origin = headers.first(name: "Origin") {
            let normalized = self.trimmed(origin).lowercased()
            guard configuration.allowedOrigins.contains(where: { $0.lowercased() == normalized }) else {
                return .reject(status: .forbidden, headers: HTTPHeaders(), reason: "origin '\(origin)' is not allowed")
            }
        }

        var responseHeaders = HTTPHeaders()
        responseHeaders.add(name: "Upgrade", value: "websocket")
        responseHeaders.add(name: "Connection", value: "Upgrade")
        responseHeaders.add(name: "Sec-WebSocket-Accept", value: self.acceptValue(forKey: String(key)))

        // §4.2.2 item 5.3 / §11.3.4: subprotocol names are compared exactly.
        let offeredProtocols = headers[canonicalForm: "Sec-WebSocket-Protocol"]
        let subprotocol = configuration.subprotocols.first { supported in
            offeredProtocols.contains { $0 == supported[...] }
        }
        if let subprotocol {
            responseHeaders.add(name: "Sec-WebSocket-Protocol", value: subprotocol)
        }

        var deflate: NegotiatedDeflate? = nil
        if let deflateConfiguration = configuration.deflate,
            let (negotiated, value) = PerMessageDeflateNegotiation.negotiate(
                offers: headers["Sec-WebSocket-Extensions"], configuration: deflateConfiguration
            )
        {
            deflate = negotiated
            responseHeaders.add(name: "Sec-WebSocket-Extensions", value: value)
        }
        return .accept(WebSocketUpgrade(responseHeaders: responseHeaders, subprotocol: subprotocol, deflate: deflate))
    }

    private static func badRequest(_ reason: String) -> WebSocketHandshakeResult {
        .reject(status: .badRequest, headers: HTTPHeaders(), reason: reason)
    }

    private static func containsToken(_ token: String, in values: [Substring]) -> Bool {
        values.contains { $0.utf8.count == token.utf8.count && $0.lowercased() == token }
    }

    private static func trimmed(_ value: String) -> Substring {
        var slice = value[...]
        while let first = slice.first, first == " " || first == "\t" { slice.removeFirst() }
        while let last = slice.last, last == " " || last == "\t" { slice.removeLast() }
        return slice
    }

    /// 16 bytes encode to exactly 22 base64 characters followed by "==" (RFC 4648 §4).
    private static func isValidKey(_ key: Substring) -> Bool {
        let bytes = Array(key.utf8)
        guard bytes.count == 24, bytes[22] == UInt8(ascii: "="), bytes[23] == UInt8(ascii: "=") else {
            return false
        }
        return bytes[0..<22].allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "+"), UInt8(ascii: "/"):
                return true
            default:
                return false
            }
        }
    }
}
