/// Limits enforced by `STOMPFrameParser` while it scans, so that no client can make it buffer without bound.
///
/// The session announces them to clients in the CONNECTED frame.
public struct STOMPParserLimits: Sendable, Equatable {
    /// Longest command line, in bytes, without its EOL.
    public var maxCommandLength: Int
    /// Most header lines in one frame.
    public var maxHeaderCount: Int
    /// Longest raw header line, in bytes, before unescaping and without its EOL.
    public var maxHeaderLineLength: Int
    /// Largest body, in bytes; checked against `content-length` up front and while scanning for the NUL otherwise.
    public var maxBodySize: Int

    public init(
        maxCommandLength: Int = 32,
        maxHeaderCount: Int = 64,
        maxHeaderLineLength: Int = 8192,
        maxBodySize: Int = 1_048_576
    ) {
        self.maxCommandLength = maxCommandLength
        self.maxHeaderCount = maxHeaderCount
        self.maxHeaderLineLength = maxHeaderLineLength
        self.maxBodySize = maxBodySize
    }
}
