import NIOCore
import Testing

@testable import StarlingSTOMP

/// How a test feeds wire bytes to the parser.
enum Feeding: CustomStringConvertible, CaseIterable {
    case whole
    case byteByByte
    case chunksOf7

    var description: String {
        switch self {
        case .whole: "whole"
        case .byteByByte: "byte by byte"
        case .chunksOf7: "in chunks of 7 bytes"
        }
    }

    func chunks(of bytes: [UInt8]) -> [[UInt8]] {
        switch self {
        case .whole: [bytes]
        case .byteByByte: bytes.map { [$0] }
        case .chunksOf7: stride(from: 0, to: bytes.count, by: 7).map { Array(bytes[$0..<min($0 + 7, bytes.count)]) }
        }
    }
}

/// Feeds `chunks` one after the other, draining each with `next` until it returns nil, and checks that nil is only
/// ever returned with the buffer exhausted.
func parseFrames(_ chunks: [[UInt8]], parser: inout STOMPFrameParser) throws -> [STOMPFrame] {
    var frames: [STOMPFrame] = []
    for chunk in chunks {
        var buffer = ByteBuffer(bytes: chunk)
        while let frame = try parser.next(&buffer) {
            frames.append(frame)
        }
        #expect(buffer.readableBytes == 0, "next returned nil before the buffer was exhausted")
    }
    return frames
}

func parseFrames(
    _ wire: String,
    feeding: Feeding = .whole,
    version: STOMPVersion = .v1_2,
    limits: STOMPParserLimits = .init()
) throws -> [STOMPFrame] {
    var parser = STOMPFrameParser(limits: limits, version: version)
    return try parseFrames(feeding.chunks(of: Array(wire.utf8)), parser: &parser)
}

/// The error a parse throws, or nil when it does not throw.
func parseError(
    _ wire: String,
    feeding: Feeding = .whole,
    version: STOMPVersion = .v1_2,
    limits: STOMPParserLimits = .init()
) -> STOMPParseError? {
    do {
        _ = try parseFrames(wire, feeding: feeding, version: version, limits: limits)
        return nil
    } catch let error as STOMPParseError {
        return error
    } catch {
        Issue.record("unexpected error type \(error)")
        return nil
    }
}

func encoded(_ frame: STOMPFrame, version: STOMPVersion = .v1_2) -> String {
    String(buffer: STOMPFrameEncoder.encode(frame, version: version))
}

extension ByteBuffer {
    init(text: String) {
        self.init(string: text)
    }
}

/// SplitMix64: a tiny seeded generator so property tests are reproducible.
struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) {
        self.state = seed
    }

    mutating func next() -> UInt64 {
        self.state &+= 0x9E37_79B9_7F4A_7C15
        var z = self.state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
