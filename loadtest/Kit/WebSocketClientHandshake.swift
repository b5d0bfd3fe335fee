import NIOCore
import StarlingWebSocket

/// The client side of the opening handshake (RFC 6455 §4.1), written by hand: one request out, one
/// response header block in, checked for status 101, `Sec-WebSocket-Accept` (§4.1 item 4 of the client's
/// checks), the subprotocol and the extensions we offered.
struct WebSocketClientHandshake {
    enum Outcome: Equatable {
        /// The response header block is not complete yet.
        case needMoreData
        /// Upgraded; `deflate` when permessage-deflate was accepted. Bytes after the header block stay in the
        /// input buffer (they are WebSocket frames).
        case upgraded(deflate: ClientDeflate.Parameters?)
        case refused(String)
    }

    let key: String
    let offerDeflate: Bool
    static let subprotocol = "v12.stomp"
    /// A response header block longer than this is refused (no server sends one).
    static let maxResponseHeaderBytes = 16 * 1024

    private var pending = ByteBuffer()

    /// A fresh key: base64 of 16 random bytes (§4.1 item 7).
    init(offerDeflate: Bool, randomBytes: [UInt8]? = nil) {
        var generator = SystemRandomNumberGenerator()
        let bytes = randomBytes ?? (0..<16).map { _ in UInt8.random(in: 0...255, using: &generator) }
        self.key = Base64.encode(bytes)
        self.offerDeflate = offerDeflate
    }

    func request(target: TargetURL) -> String {
        var request = "GET \(target.path) HTTP/1.1\r\nHost: \(target.hostHeader)\r\nUpgrade: websocket\r\n"
        request += "Connection: Upgrade\r\nSec-WebSocket-Key: \(self.key)\r\nSec-WebSocket-Version: 13\r\n"
        request += "Sec-WebSocket-Protocol: \(Self.subprotocol)\r\n"
        if self.offerDeflate {
            request += "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
        }
        return request + "\r\n"
    }

    /// Feeds response bytes; consumes exactly the header block from `input` once it is complete.
    mutating func feed(_ input: inout ByteBuffer) -> Outcome {
        // Find the end of the header block in pending + input without consuming frame bytes after it.
        let carried = self.pending.readableBytes
        self.pending.writeImmutableBuffer(input)
        let end = self.pending.withUnsafeReadableBytes { bytes -> Int? in
            guard bytes.count >= 4 else { return nil }
            for index in 0...(bytes.count - 4)
            where bytes[index] == 13 && bytes[index + 1] == 10 && bytes[index + 2] == 13 && bytes[index + 3] == 10 {
                return index + 4
            }
            return nil
        }
        guard let end else {
            input.moveReaderIndex(forwardBy: input.readableBytes)
            if self.pending.readableBytes > Self.maxResponseHeaderBytes {
                return .refused("HTTP response header longer than \(Self.maxResponseHeaderBytes) bytes")
            }
            return .needMoreData
        }
        input.moveReaderIndex(forwardBy: end - carried)
        let text = self.pending.getString(at: self.pending.readerIndex, length: end) ?? ""
        self.pending.clear()
        return self.check(responseHeader: text)
    }

    func check(responseHeader text: String) -> Outcome {
        var lines = text.split(separator: "\r\n", omittingEmptySubsequences: true)
        guard !lines.isEmpty else { return .refused("empty HTTP response") }
        let statusLine = lines.removeFirst()
        let parts = statusLine.split(separator: " ", maxSplits: 2)
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/"), let status = Int(parts[1]) else {
            return .refused("not an HTTP response: '\(statusLine.prefix(80))'")
        }
        guard status == 101 else {
            return .refused("HTTP status \(status)\(parts.count > 2 ? " " + parts[2] : "") instead of 101 Switching Protocols")
        }
        var headers: [String: String] = [:]
        for line in lines {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let name = line[..<colon].lowercased()
            let value = String(line[line.index(after: colon)...].trimmingSpaces)
            headers[name] = headers[name].map { $0 + ", " + value } ?? value
        }
        guard headers["upgrade"]?.lowercased() == "websocket" else { return .refused("101 without Upgrade: websocket") }
        guard headers["sec-websocket-accept"] == WebSocketHandshake.acceptValue(forKey: self.key) else {
            return .refused("wrong Sec-WebSocket-Accept in the 101 response")
        }
        if let protocolName = headers["sec-websocket-protocol"], protocolName != Self.subprotocol {
            return .refused("server chose subprotocol '\(protocolName)', not offered")
        }
        guard let extensions = headers["sec-websocket-extensions"] else { return .upgraded(deflate: nil) }
        guard self.offerDeflate, let parameters = ClientDeflate.Parameters.parse(extensions) else {
            return .refused("server answered with extensions we did not offer: '\(extensions)'")
        }
        return .upgraded(deflate: parameters)
    }
}

/// RFC 4648 §4 base64, for the handshake key only.
enum Base64 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    static func encode(_ bytes: [UInt8]) -> String {
        var out: [UInt8] = []
        var index = 0
        while index < bytes.count {
            let b0 = bytes[index]
            let b1 = index + 1 < bytes.count ? bytes[index + 1] : 0
            let b2 = index + 2 < bytes.count ? bytes[index + 2] : 0
            out.append(self.alphabet[Int(b0 >> 2)])
            out.append(self.alphabet[Int((b0 & 0x03) << 4 | b1 >> 4)])
            out.append(index + 1 < bytes.count ? self.alphabet[Int((b1 & 0x0F) << 2 | b2 >> 6)] : UInt8(ascii: "="))
            out.append(index + 2 < bytes.count ? self.alphabet[Int(b2 & 0x3F)] : UInt8(ascii: "="))
            index += 3
        }
        return String(decoding: out, as: UTF8.self)
    }
}
