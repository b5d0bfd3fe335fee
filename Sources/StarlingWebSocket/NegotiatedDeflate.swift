/// The permessage-deflate parameters agreed in the handshake (RFC 7692 §7.1).
public struct NegotiatedDeflate: Sendable, Equatable {
    /// We reset our compressor after every message (RFC 7692 §7.1.1.1).
    public var serverNoContextTakeover: Bool
    /// The client resets its compressor after every message, so we reset our inflater too (§7.1.1.2).
    public var clientNoContextTakeover: Bool
    /// Our compressor's window (9...15).
    public var serverMaxWindowBits: Int
    /// The largest window the client's compressor may use (8...15). Our inflater uses at least 9, because a
    /// zlib-based client asked for 8 silently compresses with 9, and a larger inflate window is always safe.
    public var clientMaxWindowBits: Int

    public init(
        serverNoContextTakeover: Bool = false,
        clientNoContextTakeover: Bool = false,
        serverMaxWindowBits: Int = 15,
        clientMaxWindowBits: Int = 15
    ) {
        self.serverNoContextTakeover = serverNoContextTakeover
        self.clientNoContextTakeover = clientNoContextTakeover
        self.serverMaxWindowBits = serverMaxWindowBits
        self.clientMaxWindowBits = clientMaxWindowBits
    }
}
