import NIOCore

/// The bytes libFuzzer hands to `LLVMFuzzerTestOneInput`, read as a few leading option bytes and a body.
///
/// Every target reads its options from the first bytes, so the corpus files start with them (docs/fuzzing.md
/// lists each target's layout). Reading past the end yields zeros, so any input, even an empty one, is valid.
public struct FuzzInput {
    public let bytes: UnsafeBufferPointer<UInt8>
    private var offset = 0

    public init(_ data: UnsafePointer<UInt8>, _ size: Int) {
        self.bytes = UnsafeBufferPointer(start: data, count: size)
    }

    /// The next option byte, or 0 past the end.
    public mutating func byte() -> UInt8 {
        guard self.offset < self.bytes.count else { return 0 }
        defer { self.offset += 1 }
        return self.bytes[self.offset]
    }

    /// Everything not read as an option yet.
    public var rest: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: self.bytes[min(self.offset, self.bytes.count)...]))
    }
}

/// A small deterministic generator (SplitMix64), so that where an input is cut depends only on the input.
public struct SplitMix64 {
    private var state: UInt64

    public init(seed: UInt64) {
        self.state = seed
    }

    public mutating func next() -> UInt64 {
        self.state &+= 0x9E37_79B9_7F4A_7C15
        var z = self.state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A value in `1...max`.
    public mutating func next(upTo max: Int) -> Int {
        Int(self.next() % UInt64(Swift.max(max, 1))) + 1
    }
}

/// Cuts `count` bytes into consecutive piece lengths, as the network might deliver them, chosen by `seed`:
/// low 3 bits 0 = one piece, 1 = byte by byte, 2...7 = random lengths of 1 to 2^(bits+1) bytes.
public func pieceLengths(count: Int, seed: UInt8) -> [Int] {
    guard count > 0 else { return [] }
    switch seed & 0x7 {
    case 0:
        return [count]
    case 1:
        return Array(repeating: 1, count: count)
    case let bits:
        var random = SplitMix64(seed: UInt64(seed) << 32 | UInt64(count))
        var lengths: [Int] = []
        var left = count
        while left > 0 {
            let length = min(left, random.next(upTo: 1 << (Int(bits) + 1)))
            lengths.append(length)
            left -= length
        }
        return lengths
    }
}

/// `bytes` cut as `pieceLengths` says, each piece in its own buffer (as separate socket reads are).
public func pieces(of bytes: UnsafeRawBufferPointer, seed: UInt8) -> [ByteBuffer] {
    var start = 0
    return pieceLengths(count: bytes.count, seed: seed).map { length in
        defer { start += length }
        return ByteBuffer(bytes: UnsafeRawBufferPointer(rebasing: bytes[start..<start + length]))
    }
}

/// Fails the run (libFuzzer saves the input as a crash) when a property does not hold.
@inline(__always)
public func fuzzCheck(
    _ condition: @autoclosure () -> Bool,
    _ message: @autoclosure () -> String,
    file: StaticString = #fileID,
    line: UInt = #line
) {
    if !condition() {
        fatalError("fuzz property violated: \(message())", file: file, line: line)
    }
}

/// A short hex rendering for failure messages.
public func hex(_ buffer: ByteBuffer, limit: Int = 64) -> String {
    let bytes = buffer.readableBytesView
    let shown = bytes.prefix(limit).map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined(separator: " ")
    return bytes.count > limit ? shown + " ... (\(bytes.count) bytes)" : shown
}
