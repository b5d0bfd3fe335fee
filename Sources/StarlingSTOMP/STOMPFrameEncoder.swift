import NIOCore

/// Serialises STOMP frames to wire format (STOMP 1.2 "STOMP Frames"), always with LF line ends.
///
/// Deliberate choices:
/// - Header escaping follows `version` (STOMP 1.2 "Value Encoding"): 1.2 escapes `\r \n : \`, 1.1 escapes
///   `\n : \` (it has no escape for CR, which is written raw), 1.0 and CONNECT/STOMP/CONNECTED frames escape nothing.
/// - Where nothing is escaped, CR and LF in a name or value are written as a space: they cannot be represented, and
///   writing them raw would let a value forwarded from a 1.2 peer inject headers or frames into a 1.0 peer's stream.
/// - `content-length` is always computed from the body, never taken from `frame.headers`.
public enum STOMPFrameEncoder {
    /// Writes `frame` in wire format: COMMAND EOL, headers, EOL, body, NUL. LF line ends.
    /// Header escaping per `version` (none for CONNECT/STOMP/CONNECTED frames and none in 1.0).
    /// Any `content-length` header in `frame.headers` is dropped and, when the body is non-empty, `content-length:<n>`
    /// is written as the last header computed from the body.
    public static func write(_ frame: STOMPFrame, to buffer: inout ByteBuffer, version: STOMPVersion) {
        Self.write(
            command: frame.command.rawValue, headers: frame.headers, body: frame.body, to: &buffer,
            escaping: Self.escaping(version, escape: !frame.command.isHandshake)
        )
    }

    /// Writes what follows a MESSAGE frame's command line (the part every subscriber shares): `headers` escaped per
    /// `version`, `content-length` computed from `body` (any in `headers` is dropped), the blank line, `body`, NUL.
    public static func writeHeadersAndBody(_ headers: STOMPHeaders, body: ByteBuffer, to buffer: inout ByteBuffer, version: STOMPVersion) {
        Self.write(command: nil, headers: headers, body: body, to: &buffer, escaping: Self.escaping(version, escape: true))
    }

    /// A frame, or without `command` the part after its command line.
    private static func write(command: String?, headers: STOMPHeaders, body: ByteBuffer, to buffer: inout ByteBuffer, escaping: HeaderEscaping) {
        let contentLength = body.readableBytes > 0 ? String(body.readableBytes) : ""
        // Fast path, the usual case: nothing to escape, so the exact size is known and the frame is copied in one
        // pass. Each separate ByteBuffer write costs a capacity and uniqueness check, which dominated profiles.
        if let size = Self.exactSizeWithoutEscapes(command: command, headers: headers, body: body, escaping: escaping, contentLength: contentLength) {
            buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: size) { output in
                Self.copyWithoutEscapes(command: command, headers: headers, body: body, contentLength: contentLength, into: output)
            }
            return
        }
        buffer.reserveCapacity(minimumWritableBytes: Self.estimatedSize(command: command, headers: headers, body: body))
        if let command {
            buffer.writeString(command)
            buffer.writeInteger(UInt8(ascii: "\n"))
        }
        for header in headers where header.name != "content-length" {
            Self.writeText(header.name, to: &buffer, escaping: escaping)
            buffer.writeInteger(UInt8(ascii: ":"))
            Self.writeText(header.value, to: &buffer, escaping: escaping)
            buffer.writeInteger(UInt8(ascii: "\n"))
        }
        if !contentLength.isEmpty {
            buffer.writeStaticString("content-length:")
            buffer.writeString(contentLength)
            buffer.writeInteger(UInt8(ascii: "\n"))
        }
        buffer.writeInteger(UInt8(ascii: "\n"))
        buffer.writeImmutableBuffer(body)
        buffer.writeInteger(UInt8(0))
    }

    /// Writes one `name:value\n` line with escaping per version (escape=false writes raw, except that CR and LF
    /// become spaces so the line cannot be split).
    public static func writeHeader(
        _ name: String,
        _ value: String,
        to buffer: inout ByteBuffer,
        version: STOMPVersion,
        escape: Bool = true
    ) {
        let escaping = Self.escaping(version, escape: escape)
        Self.writeText(name, to: &buffer, escaping: escaping)
        buffer.writeInteger(UInt8(ascii: ":"))
        Self.writeText(value, to: &buffer, escaping: escaping)
        buffer.writeInteger(UInt8(ascii: "\n"))
    }

    /// Convenience: a new buffer holding the encoded frame.
    public static func encode(
        _ frame: STOMPFrame,
        version: STOMPVersion,
        allocator: ByteBufferAllocator = .init()
    ) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: Self.estimatedSize(command: frame.command.rawValue, headers: frame.headers, body: frame.body))
        Self.write(frame, to: &buffer, version: version)
        return buffer
    }

    private static func escaping(_ version: STOMPVersion, escape: Bool) -> HeaderEscaping {
        switch version {
        case _ where !escape: .none
        case .v1_0: .none
        case .v1_1: .v11
        case .v1_2: .v12
        }
    }

    /// The exact encoded size, or nil when some header needs escaping (or rewriting).
    private static func exactSizeWithoutEscapes(
        command: String?,
        headers: STOMPHeaders,
        body: ByteBuffer,
        escaping: HeaderEscaping,
        contentLength: String
    ) -> Int? {
        var size = (command.map { $0.utf8.count + 1 } ?? 0) + 1 + body.readableBytes + 1
        for header in headers where header.name != "content-length" {
            guard let name = Self.plainCount(header.name, escaping), let value = Self.plainCount(header.value, escaping)
            else {
                return nil
            }
            size += name + value + 2
        }
        if !contentLength.isEmpty {
            size += 16 + contentLength.utf8.count
        }
        return size
    }

    /// The UTF-8 length of `text`, or nil when it holds a byte that must be escaped or rewritten.
    private static func plainCount(_ text: String, _ escaping: HeaderEscaping) -> Int? {
        let count = text.utf8.withContiguousStorageIfAvailable { utf8 -> Int? in
            for byte in utf8 where Self.needsRewrite(byte, escaping) {
                return nil
            }
            return utf8.count
        }
        return count ?? nil
    }

    /// Copies a frame whose headers need no escaping into `output`, which holds at least its exact size.
    private static func copyWithoutEscapes(
        command: String?,
        headers: STOMPHeaders,
        body: ByteBuffer,
        contentLength: String,
        into output: UnsafeMutableRawBufferPointer
    ) -> Int {
        var writer = RawWriter(start: output.baseAddress!)
        if let command {
            writer.copy(command)
            writer.copy(UInt8(ascii: "\n"))
        }
        for header in headers where header.name != "content-length" {
            writer.copy(header.name)
            writer.copy(UInt8(ascii: ":"))
            writer.copy(header.value)
            writer.copy(UInt8(ascii: "\n"))
        }
        if !contentLength.isEmpty {
            writer.copy("content-length:")
            writer.copy(contentLength)
            writer.copy(UInt8(ascii: "\n"))
        }
        writer.copy(UInt8(ascii: "\n"))
        body.withUnsafeReadableBytes { writer.copy($0) }
        writer.copy(UInt8(0))
        return output.baseAddress!.distance(to: writer.position)
    }

    /// A cursor over memory already sized for what is written (a plain struct, so no boxed captures and no dynamic
    /// exclusivity checks per write).
    private struct RawWriter {
        var position: UnsafeMutableRawPointer

        init(start: UnsafeMutableRawPointer) {
            self.position = start
        }

        mutating func copy(_ byte: UInt8) {
            self.position.storeBytes(of: byte, as: UInt8.self)
            self.position += 1
        }

        mutating func copy(_ bytes: UnsafeRawBufferPointer) {
            if let source = bytes.baseAddress {
                self.position.copyMemory(from: source, byteCount: bytes.count)
                self.position += bytes.count
            }
        }

        mutating func copy(_ text: String) {
            // Only called for text `plainCount` measured, which is contiguous.
            _ = text.utf8.withContiguousStorageIfAvailable { self.copy(UnsafeRawBufferPointer($0)) }
        }
    }

    /// The encoded size when nothing needs escaping; escapes add a little, which the buffer grows for.
    private static func estimatedSize(command: String?, headers: STOMPHeaders, body: ByteBuffer) -> Int {
        var size = (command.map { $0.utf8.count + 1 } ?? 0) + 1 + body.readableBytes + 1
        for header in headers {
            size += header.name.utf8.count + header.value.utf8.count + 2
        }
        if body.readableBytes > 0 {
            size += 36  // "content-length:" + up to 20 digits + LF
        }
        return size
    }

    private static func writeText(_ text: String, to buffer: inout ByteBuffer, escaping: HeaderEscaping) {
        // Common case: nothing to escape, so one scan over contiguous UTF-8 and one copy.
        let written = text.utf8.withContiguousStorageIfAvailable { utf8 -> Bool in
            for byte in utf8 where Self.needsRewrite(byte, escaping) {
                return false
            }
            buffer.writeBytes(utf8)
            return true
        }
        if written == true {
            return
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(text.utf8.count + 8)
        for byte in text.utf8 {
            switch (byte, escaping) {
            case (UInt8(ascii: "\n"), .none), (UInt8(ascii: "\r"), .none):
                bytes.append(UInt8(ascii: " "))
            case (UInt8(ascii: "\n"), _):
                bytes.append(UInt8(ascii: "\\"))
                bytes.append(UInt8(ascii: "n"))
            case (UInt8(ascii: "\r"), .v12):
                bytes.append(UInt8(ascii: "\\"))
                bytes.append(UInt8(ascii: "r"))
            case (UInt8(ascii: ":"), .v11), (UInt8(ascii: ":"), .v12):
                bytes.append(UInt8(ascii: "\\"))
                bytes.append(UInt8(ascii: "c"))
            case (UInt8(ascii: "\\"), .v11), (UInt8(ascii: "\\"), .v12):
                bytes.append(UInt8(ascii: "\\"))
                bytes.append(UInt8(ascii: "\\"))
            default:
                bytes.append(byte)
            }
        }
        buffer.writeBytes(bytes)
    }

    @inline(__always)
    private static func needsRewrite(_ byte: UInt8, _ escaping: HeaderEscaping) -> Bool {
        switch byte {
        case UInt8(ascii: "\n"): true
        case UInt8(ascii: "\r"): escaping != .v11
        case UInt8(ascii: ":"), UInt8(ascii: "\\"): escaping != .none
        default: false
        }
    }
}
