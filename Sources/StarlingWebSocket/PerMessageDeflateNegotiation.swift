/// Server side of the permessage-deflate negotiation (RFC 7692 §5, §7.1).
///
/// `Sec-WebSocket-Extensions` grammar (RFC 6455 §9.1, RFC 7230 §3.2.6):
///
///     extension-list = 1#element                        ; comma-separated, empty elements ignored
///     element        = token *( OWS ";" OWS param )
///     param          = token [ OWS "=" OWS ( token / quoted-string ) ]
///
/// The client's offers are tried in order and the first acceptable permessage-deflate offer wins. An offer
/// with an unknown or duplicate parameter or a bad value is declined (the next one is tried), never an error;
/// a header that does not parse at all means "no extension".
///
/// Deliberate choices:
/// - `server_max_window_bits=8` is declined (RFC 7692 §7.1.2.1 lets a server decline an offer whose window it
///   cannot honour): zlib silently compresses raw deflate with a 9-bit window when asked for 8, and a client
///   inflating with a 256-byte window could then fail on our distances.
/// - `client_max_window_bits=8` is accepted (its value only limits the client); our inflater uses 9 bits,
///   which decodes anything an 8-bit compressor (or zlib's silent 9) produces.
/// - When the client does not offer `client_max_window_bits`, it may use 15 bits; if the configuration accepts
///   less than 15 from clients, the offer is declined (we may not send the parameter, §7.1.2.2).
/// - `server_max_window_bits` is sent when offered or when our configured window is below 15 (§7.1.2.1 allows
///   it unasked); `server_no_context_takeover` is sent when offered or configured (§7.1.1.1).
enum PerMessageDeflateNegotiation {
    static let extensionName = "permessage-deflate"

    /// Returns the agreed parameters and the `Sec-WebSocket-Extensions` response value, or `nil`.
    static func negotiate(
        offers headerValues: [String],
        configuration: PerMessageDeflateConfiguration
    ) -> (NegotiatedDeflate, responseValue: String)? {
        guard !headerValues.isEmpty, let elements = self.parse(headerValues.joined(separator: ",")) else {
            return nil
        }
        for element in elements where element.name.lowercased() == self.extensionName {
            if let accepted = self.accept(parameters: element.parameters, configuration: configuration) {
                return accepted
            }
        }
        return nil
    }

    /// Judges one offer; `nil` declines it.
    static func accept(
        parameters: [(name: String, value: String?)],
        configuration: PerMessageDeflateConfiguration
    ) -> (NegotiatedDeflate, responseValue: String)? {
        var seen: Set<String> = []
        var serverNoContextTakeover = false
        var clientNoContextTakeover = false
        var offeredServerBits: Int? = nil
        var clientBitsOffered = false
        var offeredClientBits: Int? = nil
        for (name, value) in parameters {
            let name = name.lowercased()
            guard seen.insert(name).inserted else { return nil }  // RFC 7692 §7.1: no duplicates
            switch name {
            case "server_no_context_takeover":
                guard value == nil else { return nil }
                serverNoContextTakeover = true
            case "client_no_context_takeover":
                guard value == nil else { return nil }
                clientNoContextTakeover = true
            case "server_max_window_bits":
                guard let value, let bits = self.windowBits(value) else { return nil }
                offeredServerBits = bits
            case "client_max_window_bits":
                clientBitsOffered = true
                if let value {
                    guard let bits = self.windowBits(value) else { return nil }
                    offeredClientBits = bits
                }
            default:
                return nil
            }
        }

        var response = self.extensionName
        let configuredServerBits = min(max(configuration.serverMaxWindowBits, 9), 15)
        let serverBits: Int
        if let offered = offeredServerBits {
            guard offered >= 9 else { return nil }  // zlib cannot compress with an 8-bit window
            serverBits = min(configuredServerBits, offered)
        } else {
            serverBits = configuredServerBits
        }
        let configuredClientBits = min(max(configuration.clientMaxWindowBits, 9), 15)
        let clientBits: Int
        if clientBitsOffered {
            clientBits = min(configuredClientBits, offeredClientBits ?? 15)
        } else {
            guard configuredClientBits == 15 else { return nil }
            clientBits = 15
        }
        let negotiated = NegotiatedDeflate(
            serverNoContextTakeover: serverNoContextTakeover || configuration.serverNoContextTakeover,
            clientNoContextTakeover: clientNoContextTakeover || configuration.clientNoContextTakeover,
            serverMaxWindowBits: serverBits,
            clientMaxWindowBits: clientBits
        )
        if negotiated.serverNoContextTakeover { response += "; server_no_context_takeover" }
        if negotiated.clientNoContextTakeover { response += "; client_no_context_takeover" }
        if offeredServerBits != nil || serverBits < 15 { response += "; server_max_window_bits=\(serverBits)" }
        if clientBitsOffered && clientBits < 15 { response += "; client_max_window_bits=\(clientBits)" }
        return (negotiated, response)
    }

    /// `1*DIGIT` without leading zero, 8...15 (RFC 7692 §7.1.2.1). Accepts the quoted-string form unquoted.
    private static func windowBits(_ value: String) -> Int? {
        guard let first = value.utf8.first, first != UInt8(ascii: "0"), value.utf8.count <= 2,
            value.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
            let bits = Int(value), (8...15).contains(bits)
        else { return nil }
        return bits
    }

    // MARK: - Header parsing

    struct Element {
        var name: String
        var parameters: [(name: String, value: String?)]
    }

    /// Parses an extension list; `nil` when malformed.
    static func parse(_ header: String) -> [Element]? {
        var scanner = Scanner(bytes: Array(header.utf8))
        var elements: [Element] = []
        while true {
            scanner.skipWhitespace()
            if scanner.atEnd { return elements }
            if scanner.consume(UInt8(ascii: ",")) { continue }  // empty list element
            guard let name = scanner.token() else { return nil }
            var element = Element(name: name, parameters: [])
            while true {
                scanner.skipWhitespace()
                if scanner.atEnd || scanner.consume(UInt8(ascii: ",")) { break }
                guard scanner.consume(UInt8(ascii: ";")) else { return nil }
                scanner.skipWhitespace()
                guard let parameter = scanner.token() else { return nil }
                scanner.skipWhitespace()
                var value: String? = nil
                if scanner.consume(UInt8(ascii: "=")) {
                    scanner.skipWhitespace()
                    guard let parsed = scanner.quotedString() ?? scanner.token() else { return nil }
                    value = parsed
                }
                element.parameters.append((parameter, value))
            }
            elements.append(element)
        }
    }

    private struct Scanner {
        let bytes: [UInt8]
        var index = 0

        var atEnd: Bool { self.index >= self.bytes.count }

        mutating func skipWhitespace() {
            while self.index < self.bytes.count, self.bytes[self.index] == 0x20 || self.bytes[self.index] == 0x09 {
                self.index += 1
            }
        }

        mutating func consume(_ byte: UInt8) -> Bool {
            guard self.index < self.bytes.count, self.bytes[self.index] == byte else { return false }
            self.index += 1
            return true
        }

        /// RFC 7230 §3.2.6 token.
        mutating func token() -> String? {
            let start = self.index
            while self.index < self.bytes.count, Self.isTokenCharacter(self.bytes[self.index]) { self.index += 1 }
            guard self.index > start else { return nil }
            return String(decoding: self.bytes[start..<self.index], as: UTF8.self)
        }

        /// RFC 7230 §3.2.6 quoted-string, returned unquoted.
        mutating func quotedString() -> String? {
            guard self.consume(UInt8(ascii: "\"")) else { return nil }
            var value: [UInt8] = []
            while self.index < self.bytes.count {
                let byte = self.bytes[self.index]
                self.index += 1
                if byte == UInt8(ascii: "\"") { return String(decoding: value, as: UTF8.self) }
                if byte == UInt8(ascii: "\\") {
                    guard self.index < self.bytes.count else { return nil }
                    value.append(self.bytes[self.index])
                    self.index += 1
                } else {
                    value.append(byte)
                }
            }
            return nil
        }

        static func isTokenCharacter(_ byte: UInt8) -> Bool {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"):
                return true
            default:
                return "!#$%&'*+-.^_`|~".utf8.contains(byte)
            }
        }
    }
}
