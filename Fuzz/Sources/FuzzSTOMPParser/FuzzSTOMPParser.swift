import FuzzSupport
import NIOCore
import StarlingSTOMP

// Input layout: [options] [cut seed] [STOMP byte stream...]
//   options: bits 0-1 version (0 = 1.0, 1 = 1.1, 2/3 = 1.2); bit 2 small limits (the limit errors get reached);
//   cut seed: how the stream is cut into reads (`pieceLengths`).
//
// Properties checked:
// 1. Parsing the stream in one buffer and in pieces gives the same frames, the same error and the same
//    `failedFrameReceipt`: the parser is resumable at any byte.
// 2. `next` returns nil only with its buffer used up; after a throw it keeps throwing the same error.
// 3. Every frame respects the limits: body, header count, header line length.
// 4. A body read by `content-length` has that length.
// 5. A parsed frame encoded by `STOMPFrameEncoder` (same version) parses back to the same frame, up to what the
//    encoder documents it changes (content-length recomputed, CR/LF written as spaces where nothing is escaped,
//    and in 1.1 a value's trailing CR, which has no escape there, read back as the line end).

private struct Outcome: Equatable {
    var frames: [STOMPFrame] = []
    var error: STOMPParseError?
    var failedFrameReceipt: String?
}

private func parse(_ buffers: [ByteBuffer], limits: STOMPParserLimits, version: STOMPVersion) -> Outcome {
    var parser = STOMPFrameParser(limits: limits, version: version)
    var outcome = Outcome()
    for var buffer in buffers {
        do {
            while let frame = try parser.next(&buffer) {
                outcome.frames.append(frame)
            }
            fuzzCheck(buffer.readableBytes == 0, "next returned nil with \(buffer.readableBytes) bytes left")
        } catch let error as STOMPParseError {
            outcome.error = error
            outcome.failedFrameReceipt = parser.failedFrameReceipt
            // Poisoned: the same error again, whatever comes next.
            var more = ByteBuffer(string: "SEND\n\n\0")
            do {
                _ = try parser.next(&more)
                fuzzCheck(false, "a failed parser returned a frame")
            } catch let again as STOMPParseError {
                fuzzCheck(again == error, "a failed parser threw \(again) after \(error)")
            } catch {
                fuzzCheck(false, "unexpected error type \(error)")
            }
            return outcome
        } catch {
            fuzzCheck(false, "unexpected error type \(error)")
        }
    }
    return outcome
}

private func checkLimits(_ frame: STOMPFrame, _ limits: STOMPParserLimits) {
    fuzzCheck(frame.body.readableBytes <= limits.maxBodySize, "body of \(frame.body.readableBytes) bytes past the limit")
    fuzzCheck(frame.headers.count <= limits.maxHeaderCount, "\(frame.headers.count) headers past the limit")
    for header in frame.headers {
        // Unescaping only shortens a line, so the decoded line is within the raw line's limit.
        let length = header.name.utf8.count + 1 + header.value.utf8.count
        fuzzCheck(length <= limits.maxHeaderLineLength, "header line of \(length) bytes past the limit")
        fuzzCheck(!header.name.isEmpty, "a header with an empty name")
    }
    if let contentLength = frame.headers["content-length"] {
        fuzzCheck(Int(contentLength) == frame.body.readableBytes,
                  "content-length \(contentLength) but a body of \(frame.body.readableBytes) bytes")
    }
}

/// What the encoder is documented to write for `text` (see `STOMPFrameEncoder`), as the parser reads it back.
private func expectedAfterRoundTrip(_ text: String, escaped: Bool, version: STOMPVersion, isValue: Bool) -> String {
    if !escaped || version == .v1_0 {
        return String(decoding: text.utf8.map { $0 == UInt8(ascii: "\r") || $0 == UInt8(ascii: "\n") ? UInt8(ascii: " ") : $0 },
                      as: UTF8.self)
    }
    if version == .v1_1, isValue, text.utf8.last == UInt8(ascii: "\r") {
        return String(decoding: text.utf8.dropLast(), as: UTF8.self)
    }
    return text
}

private func checkRoundTrip(_ frame: STOMPFrame, version: STOMPVersion) {
    let encoded = STOMPFrameEncoder.encode(frame, version: version)
    // Generous limits: escaping lengthens lines and the encoder adds a content-length header.
    let generous = STOMPParserLimits(maxCommandLength: 32, maxHeaderCount: 1 << 20, maxHeaderLineLength: 1 << 20,
                                     maxBodySize: 1 << 24)
    let reparsed = parse([encoded], limits: generous, version: version)
    fuzzCheck(reparsed.error == nil, "the encoding of a parsed frame does not parse: \(reparsed.error!) in \(hex(encoded))")
    fuzzCheck(reparsed.frames.count == 1, "the encoding of one frame parses as \(reparsed.frames.count) frames")
    let again = reparsed.frames[0]
    let escaped = ![.connect, .stomp, .connected].contains(frame.command)
    var expected = STOMPHeaders()
    for header in frame.headers where header.name != "content-length" {
        expected.add(expectedAfterRoundTrip(header.name, escaped: escaped, version: version, isValue: false),
                     expectedAfterRoundTrip(header.value, escaped: escaped, version: version, isValue: true))
    }
    if frame.body.readableBytes > 0 {
        expected.add("content-length", String(frame.body.readableBytes))
    }
    fuzzCheck(again.command == frame.command, "command \(frame.command) came back as \(again.command)")
    fuzzCheck(again.headers == expected, "headers \(frame.headers) came back as \(again.headers), expected \(expected)")
    fuzzCheck(again.body == frame.body, "body \(hex(frame.body)) came back as \(hex(again.body))")
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    let options = input.byte()
    let cutSeed = input.byte()
    let version: STOMPVersion = switch options & 0x3 {
    case 0: .v1_0
    case 1: .v1_1
    default: .v1_2
    }
    let limits = options & 0x4 != 0
        ? STOMPParserLimits(maxCommandLength: 12, maxHeaderCount: 3, maxHeaderLineLength: 24, maxBodySize: 40)
        : STOMPParserLimits()
    let stream = input.rest

    let whole = parse([ByteBuffer(bytes: stream)], limits: limits, version: version)
    let cut = parse(pieces(of: stream, seed: cutSeed), limits: limits, version: version)
    fuzzCheck(whole == cut, "one buffer gave \(whole), pieces (seed \(cutSeed)) gave \(cut)")

    for frame in whole.frames {
        checkLimits(frame, limits)
        checkRoundTrip(frame, version: version)
    }
    return 0
}
