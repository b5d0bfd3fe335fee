import NIOCore
import Testing

@testable import StarlingSTOMP

/// Random frames, encoded and concatenated with heart-beats between them, then parsed in random splits, must come
/// back unchanged. Seeded, so a failure is reproducible from the seed printed with it.
@Suite("Round-trip property")
struct STOMPRoundTripPropertyTests {
    @Test("Random frames survive encoding, concatenation and parsing in random splits", arguments: STOMPVersion.allCases)
    func randomFramesRoundTrip(version: STOMPVersion) throws {
        for seed in UInt64(1)...150 {
            var random = SeededGenerator(seed: seed &* 7919 &+ UInt64(version.rawValue.utf8.last!))
            let frames = (0..<Int.random(in: 1...6, using: &random)).map { _ in Self.randomFrame(version, &random) }

            var wire: [UInt8] = []
            for frame in frames {
                wire += Self.randomHeartBeats(&random)
                wire += STOMPFrameEncoder.encode(frame, version: version).readableBytesView
            }
            wire += Self.randomHeartBeats(&random)

            var chunks: [[UInt8]] = []
            var offset = 0
            while offset < wire.count {
                let size = Bool.random(using: &random) ? Int.random(in: 1...8, using: &random) : Int.random(in: 1...400, using: &random)
                chunks.append(Array(wire[offset..<min(offset + size, wire.count)]))
                offset += size
            }

            var parser = STOMPFrameParser(version: version)
            let parsed = try parseFrames(chunks, parser: &parser)
            let expected = frames.map { frame -> STOMPFrame in
                var frame = frame
                if frame.body.readableBytes > 0 {
                    frame.headers.add("content-length", String(frame.body.readableBytes))
                }
                return frame
            }
            #expect(parsed == expected, "seed \(seed), version \(version)")
        }
    }

    /// Characters a header may carry in this version and command: every special character where escaping makes it
    /// representable, plain text (including non-ASCII) where it does not.
    static func alphabet(_ version: STOMPVersion, _ command: STOMPCommand, isName: Bool) -> [Character] {
        var characters: [Character] = ["a", "b", "Z", "0", "-", "/", " ", "é", "😀", "\t", "#"]
        if command.isHandshake || version == .v1_0 {
            characters.append("\\")
            if !isName {
                characters.append(":")
            }
        } else {
            characters += ["\\", ":", "\n"]
            if version == .v1_2 {
                characters.append("\r")
            }
        }
        return characters
    }

    static func randomText(_ alphabet: [Character], minLength: Int, _ random: inout SeededGenerator) -> String {
        String((0..<Int.random(in: minLength...12, using: &random)).map { _ in alphabet.randomElement(using: &random)! })
    }

    static func randomFrame(_ version: STOMPVersion, _ random: inout SeededGenerator) -> STOMPFrame {
        let command = STOMPCommand.allCases.randomElement(using: &random)!
        let names = Self.alphabet(version, command, isName: true)
        let values = Self.alphabet(version, command, isName: false)
        var headers = STOMPHeaders()
        for _ in 0..<Int.random(in: 0...8, using: &random) {
            var name = Self.randomText(names, minLength: 1, &random)
            if name == "content-length" {
                name += "x"
            }
            headers.add(name, Self.randomText(values, minLength: 0, &random))
            if Bool.random(using: &random) && Int.random(in: 0..<4, using: &random) == 0 {
                headers.add(name, "repeat")
            }
        }
        let bodyLength = Bool.random(using: &random) ? 0 : Int.random(in: 1...600, using: &random)
        let body = ByteBuffer(bytes: (0..<bodyLength).map { _ in UInt8.random(in: 0...255, using: &random) })
        return STOMPFrame(command, headers: headers, body: body)
    }

    static func randomHeartBeats(_ random: inout SeededGenerator) -> [UInt8] {
        (0..<Int.random(in: 0...2, using: &random)).flatMap { _ in
            Bool.random(using: &random) ? Array("\n".utf8) : Array("\r\n".utf8)
        }
    }
}
