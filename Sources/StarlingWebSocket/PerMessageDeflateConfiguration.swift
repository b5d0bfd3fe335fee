/// Server-side settings for permessage-deflate (RFC 7692 §7).
///
/// Window bits are clamped to 9...15 when used: zlib cannot produce a raw deflate stream with an 8-bit window
/// (it silently uses 9), see `PerMessageDeflateNegotiation`.
public struct PerMessageDeflateConfiguration: Sendable, Equatable {
    /// Our compressor's LZ77 window (9...15). We answer with less when the client asks for less.
    public var serverMaxWindowBits: Int = 15
    /// The largest window we accept from the client's compressor (9...15).
    public var clientMaxWindowBits: Int = 15
    /// zlib `memLevel` (1...9) of our compressor; lower uses less memory per connection.
    public var memoryLevel: Int = 8
    /// zlib compression level (0...9, or -1 for zlib's default).
    public var compressionLevel: Int = 6
    /// Messages shorter than this are sent uncompressed (RSV1 clear), RFC 7692 §6.
    public var minimumSizeToCompress: Int = 64
    /// `true` = always answer with `server_no_context_takeover` and reset our compressor for every message.
    public var serverNoContextTakeover: Bool = false
    /// `true` = always answer with `client_no_context_takeover` (RFC 7692 §7.1.1.2 lets a server include it even
    /// when not offered): the client compresses each message alone, so we need no inflater between messages
    /// and free it after each one, instead of holding ~40 KiB of zlib state per idle connection.
    public var clientNoContextTakeover: Bool = false

    public init() {}
}
