import NIOCore
import Testing

@testable import StarlingWebSocket

@Suite("WebSocket frame parser and encoder (RFC 6455 §5)")
struct WebSocketFrameParserTests {
    /// RFC 6455 §5.7 examples.
    static let maskedHello: [UInt8] = [0x81, 0x85, 0x37, 0xFA, 0x21, 0x3D, 0x7F, 0x9F, 0x4D, 0x51, 0x58]
    static let unmaskedHello: [UInt8] = [0x81, 0x05, 0x48, 0x65, 0x6C, 0x6C, 0x6F]
    static let fragmentedHello: [UInt8] = [0x01, 0x03, 0x48, 0x65, 0x6C, 0x80, 0x02, 0x6C, 0x6F]
    static let unmaskedPing: [UInt8] = [0x89, 0x05, 0x48, 0x65, 0x6C, 0x6C, 0x6F]
    static let maskedPong: [UInt8] = [0x8A, 0x85, 0x37, 0xFA, 0x21, 0x3D, 0x7F, 0x9F, 0x4D, 0x51, 0x58]

    func parseAll(_ bytes: [UInt8], expectMasked: Bool, chunk: Int? = nil, maxFrameSize: Int = 1 << 20) throws -> [WebSocketFrame] {
        var parser = WebSocketFrameParser(maxFrameSize: maxFrameSize, expectMasked: expectMasked)
        var frames: [WebSocketFrame] = []
        let step = chunk ?? max(bytes.count, 1)
        var index = 0
        repeat {
            var input = ByteBuffer(bytes: bytes[index..<min(index + step, bytes.count)])
            while let frame = try parser.next(&input) { frames.append(frame) }
            #expect(input.readableBytes == 0)
            index += step
        } while index < bytes.count
        return frames
    }

    func text(_ frame: WebSocketFrame) -> String { String(buffer: frame.payload) }

    @Test("The RFC's masked client Hello parses whole and byte by byte", arguments: [nil, 1, 2, 3, 5] as [Int?])
    func maskedHello(chunk: Int?) throws {
        let frames = try self.parseAll(Self.maskedHello, expectMasked: true, chunk: chunk)
        #expect(frames == [WebSocketFrame(fin: true, opcode: .text, payload: buffer("Hello"))])
    }

    @Test("Server frames (unmasked) parse when asked, including fragments and a ping, several per buffer")
    func unmaskedFramesSeveralPerBuffer() throws {
        let bytes = Self.unmaskedHello + Self.fragmentedHello + Self.unmaskedPing
        for chunk in [nil, 1, 4] as [Int?] {
            let frames = try self.parseAll(bytes, expectMasked: false, chunk: chunk)
            #expect(frames.map(\.opcode) == [.text, .text, .continuation, .ping])
            #expect(frames.map(\.fin) == [true, false, true, true])
            #expect(frames.map(self.text) == ["Hello", "Hel", "lo", "Hello"])
        }
    }

    @Test("16-bit and 64-bit extended lengths parse, whole and in odd splits")
    func extendedLengths() throws {
        for length in [125, 126, 256, 65535, 65536, 70001] {
            let payload = ByteBuffer(bytes: (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 7) })
            var wire = ByteBuffer()
            WebSocketFrameEncoder.writeFrame(opcode: .binary, payload: payload, maskingKey: exampleKey, to: &wire)
            let headerLength = length < 126 ? 6 : length <= 65535 ? 8 : 14
            #expect(wire.readableBytes == headerLength + length)
            for chunk in [nil, 3, 4093] as [Int?] {
                let frames = try self.parseAll(Array(wire.readableBytesView), expectMasked: true, chunk: chunk)
                #expect(frames == [WebSocketFrame(opcode: .binary, payload: payload)])
            }
        }
    }

    @Test("Header bytes for 256 and 65536 byte frames match RFC 6455 §5.7")
    func encoderHeaderBytes() {
        var small = ByteBuffer()
        WebSocketFrameEncoder.writeFrameHeader(opcode: .binary, fin: true, rsv1: false, payloadLength: 256, maskingKey: nil, to: &small)
        #expect(Array(small.readableBytesView) == [0x82, 0x7E, 0x01, 0x00])
        var large = ByteBuffer()
        WebSocketFrameEncoder.writeFrameHeader(opcode: .binary, fin: true, rsv1: false, payloadLength: 65536, maskingKey: nil, to: &large)
        #expect(Array(large.readableBytesView) == [0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0])
        var masked = ByteBuffer()
        WebSocketFrameEncoder.writeFrame(opcode: .pong, payload: buffer("Hello"), maskingKey: exampleKey, to: &masked)
        #expect(Array(masked.readableBytesView) == Self.maskedPong)
        var compressed = ByteBuffer()
        WebSocketFrameEncoder.writeFrameHeader(opcode: .text, fin: false, rsv1: true, payloadLength: 3, maskingKey: nil, to: &compressed)
        #expect(Array(compressed.readableBytesView) == [0x41, 0x03])
    }

    @Test("Masking works at every length and key phase and is its own inverse")
    func maskingRoundTrip() {
        for length in [0, 1, 7, 8, 9, 31, 32, 33, 100] {
            let original = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 5) }
            var data = ByteBuffer(bytes: original)
            WebSocketFrameEncoder.mask(&data, key: exampleKey)
            let keyBytes = [exampleKey.0, exampleKey.1, exampleKey.2, exampleKey.3]
            #expect(Array(data.readableBytesView) == original.enumerated().map { $0.element ^ keyBytes[$0.offset % 4] })
            WebSocketFrameEncoder.mask(&data, key: exampleKey)
            #expect(Array(data.readableBytesView) == original)
        }
    }

    @Test("A zero-length frame parses")
    func emptyFrame() throws {
        let frames = try self.parseAll([0x82, 0x80, 1, 2, 3, 4], expectMasked: true, chunk: 1)
        #expect(frames == [WebSocketFrame(opcode: .binary, payload: ByteBuffer())])
    }

    func error(_ bytes: [UInt8], expectMasked: Bool = true, allowCompressionBit: Bool = false, maxFrameSize: Int = 1 << 20) -> WebSocketProtocolError? {
        var parser = WebSocketFrameParser(maxFrameSize: maxFrameSize, expectMasked: expectMasked, allowCompressionBit: allowCompressionBit)
        var input = ByteBuffer(bytes: bytes)
        do {
            while try parser.next(&input) != nil {}
            return nil
        } catch {
            // The parser stays failed.
            #expect(throws: error) { try parser.next(&input) }
            return error
        }
    }

    @Test("Header violations are reported from the first bytes, before any payload")
    func headerViolations() {
        #expect(self.error([0x81, 0x05]) == .unexpectedMasking(expectedMasked: true))
        #expect(self.error([0x81, 0x85], expectMasked: false) == .unexpectedMasking(expectedMasked: false))
        #expect(self.error([0xA1, 0x80]) == .reservedBitsSet)  // RSV2
        #expect(self.error([0x91, 0x80]) == .reservedBitsSet)  // RSV3
        #expect(self.error([0xC1, 0x80]) == .reservedBitsSet)  // RSV1 without deflate
        #expect(self.error([0xC1, 0x80, 0, 0, 0, 0], allowCompressionBit: true) == nil)
        #expect(self.error([0x40, 0x80], allowCompressionBit: true) == .unexpectedCompressionBit)
        #expect(self.error([0xC9, 0x80], allowCompressionBit: true) == .unexpectedCompressionBit)
        #expect(self.error([0x83, 0x80]) == .reservedOpcode(3))
        #expect(self.error([0x8B, 0x80]) == .reservedOpcode(0xB))
        #expect(self.error([0x09, 0x80]) == .fragmentedControlFrame)
        #expect(self.error([0x89, 0xFE]) == .controlFrameTooLong(length: 126))
        #expect(self.error([0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0]) == .invalidPayloadLength)
        #expect(self.error([0x82, 0xFE, 0x01, 0x01], maxFrameSize: 256) == .frameTooLarge(limit: 256))
        #expect(self.error([0x82, 0xFF, 0, 0, 0, 1, 0, 0, 0, 0], maxFrameSize: 256) == .frameTooLarge(limit: 256))
    }
}

@Suite("UTF-8 validation")
struct UTF8ValidatorTests {
    func valid(_ bytes: [UInt8]) -> Bool { bytes.withUnsafeBytes { UTF8Validator.isValid($0) } }

    @Test("Valid text including every sequence length is accepted, whole and split at every byte")
    func validText() {
        let text = Array("ascii only, then κόσμε, 日本語, 🎉 and ASCII again to cross the 8-byte fast path".utf8)
        #expect(self.valid(text))
        for split in 0...text.count {
            var validator = UTF8Validator()
            let first = text[..<split].withUnsafeBytes { validator.validate($0) }
            let second = text[split...].withUnsafeBytes { validator.validate($0) }
            #expect(first && second && validator.isComplete)
        }
    }

    @Test(
        "Invalid sequences are rejected",
        arguments: [
            [0x80], [0xC0, 0xAF], [0xC1, 0xBF], [0xE0, 0x80, 0xAF], [0xED, 0xA0, 0x80], [0xF0, 0x80, 0x80, 0xAF],
            [0xF4, 0x90, 0x80, 0x80], [0xF5, 0x80, 0x80, 0x80], [0xFF], [0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0xCE],
            [0xCE, 0x41],
        ] as [[UInt8]]
    )
    func invalidSequences(bytes: [UInt8]) {
        #expect(!self.valid(bytes))
    }
}
