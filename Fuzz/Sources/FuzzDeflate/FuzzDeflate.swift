import CZlibReference
import FuzzSupport
import NIOCore
import StarlingWebSocket

// Input layout: [options] [limit] [cut seed] then messages, each [length: 2 bytes, big-endian] [bytes]
// (the last one takes what is left when its length runs past the end).
//   options: bit 0 mode: 0 = inflate the messages as a client's compressed messages, 1 = compress them and
//   inflate the result (round trip); bit 1 no context takeover; bits 2-3 window bits (9, 11, 13, 15);
//   bits 4-5 compression level (0, 1, 6, 9); bit 6 memLevel 1 instead of 8; bit 7 (round trip) also through
//   SharedMessageCompressor with a stored-block prefix.
//   limit: the inflate limit, 64 * limit bytes (255 = 1 MiB).
//   cut seed: how each compressed message is cut into frames (`pieceLengths`).
//
// Properties checked:
// 1. PerMessageInflater agrees with zlib itself (an independent raw inflate of the message plus 00 00 FF FF,
//    with the same context rules): same bytes when the message fits the limit, `.messageTooLarge` exactly when it
//    inflates to more, `.invalidCompressedData` exactly when zlib finds an error first.
// 2. The output never holds more than the limit, and its buffer never grows past the limit rounded up to a power
//    of two (NIO's growth step): a deflate bomb costs at most that. A 64 MiB bomb is checked once at start.
// 3. PerMessageDeflater -> PerMessageInflater gives back prefix + payload, for every window, level, memLevel
//    and context mode, cut into frames anywhere; with a limit of exactly that size it fits, one byte less fails.
// 4. SharedMessageCompressor: a stored-block prefix followed by the shared compressed payload inflates to
//    prefix + payload, and asking twice for the same buffer returns the cached bytes.

/// zlib's own raw inflate, one call per message, as the reference.
private final class ReferenceInflater {
    enum Outcome: Equatable {
        case inflated([UInt8])
        case tooLarge
        case invalid
    }

    private let stream: UnsafeMutablePointer<z_stream>
    private let resetEachMessage: Bool

    init(windowBits: Int, noContextTakeover: Bool) {
        self.stream = .allocate(capacity: 1)
        self.stream.initialize(to: z_stream())
        let result = inflateInit2_(self.stream, -Int32(min(max(windowBits, 9), 15)), zlibVersion(),
                                   Int32(MemoryLayout<z_stream>.size))
        precondition(result == Z_OK, "reference inflateInit2 failed")
        self.resetEachMessage = noContextTakeover
    }

    deinit {
        inflateEnd(self.stream)
        self.stream.deinitialize(count: 1)
        self.stream.deallocate()
    }

    func message(_ compressed: [UInt8], limit: Int) -> Outcome {
        let input = compressed + [0x00, 0x00, 0xFF, 0xFF]
        var output = [UInt8](repeating: 0, count: limit + 1)
        var result: Int32 = Z_OK
        var produced = 0
        input.withUnsafeBufferPointer { input in
            output.withUnsafeMutableBufferPointer { output in
                self.stream.pointee.next_in = UnsafeMutablePointer(mutating: input.baseAddress)
                self.stream.pointee.avail_in = uInt(input.count)
                self.stream.pointee.next_out = output.baseAddress
                self.stream.pointee.avail_out = uInt(output.count)
                result = inflate(self.stream, Z_SYNC_FLUSH)
                produced = output.count - Int(self.stream.pointee.avail_out)
                self.stream.pointee.next_in = nil
                self.stream.pointee.next_out = nil
            }
        }
        if produced > limit { return .tooLarge }
        switch result {
        case Z_OK, Z_BUF_ERROR:
            if self.resetEachMessage { inflateReset(self.stream) }
        case Z_STREAM_END:
            inflateReset(self.stream)  // the sender ended its stream (BFINAL): the next message starts afresh
        default:
            return .invalid
        }
        return .inflated(Array(output[..<produced]))
    }
}

private func nextPowerOfTwo(_ value: Int) -> Int {
    var power = 1
    while power < value { power <<= 1 }
    return power
}

/// Inflates one message cut into `frames`; checks the output bound after every call.
private func inflateMessage(
    _ inflater: PerMessageInflater,
    frames: [ByteBuffer],
    limit: Int
) -> Result<ByteBuffer, WebSocketProtocolError> {
    var output = ByteBuffer()
    func checkBounds() {
        fuzzCheck(output.readableBytes <= limit, "inflated \(output.readableBytes) bytes past the limit \(limit)")
        fuzzCheck(output.capacity <= nextPowerOfTwo(max(limit, 1)),
                  "output buffer of \(output.capacity) bytes for a limit of \(limit)")
    }
    do {
        for frame in frames {
            try inflater.inflate(frame, into: &output, limit: limit)
            checkBounds()
        }
        try inflater.finishMessage(into: &output, limit: limit)
        checkBounds()
        return .success(output)
    } catch {
        checkBounds()
        return .failure(error)
    }
}

private func messages(in bytes: UnsafeRawBufferPointer) -> [[UInt8]] {
    var result: [[UInt8]] = []
    var offset = 0
    while offset < bytes.count {
        let high = Int(bytes[offset])
        let low = offset + 1 < bytes.count ? Int(bytes[offset + 1]) : 0
        let start = min(offset + 2, bytes.count)
        let end = min(start + (high << 8 | low), bytes.count)
        result.append(Array(bytes[start..<end]))
        offset = end
    }
    return result
}

private func frames(_ bytes: [UInt8], seed: UInt8) -> [ByteBuffer] {
    bytes.withUnsafeBytes { pieces(of: $0, seed: seed) }
}

/// Property 1 and 2.
private func inflateClientMessages(_ messages: [[UInt8]], windowBits: Int, noContextTakeover: Bool, limit: Int,
                                   cutSeed: UInt8) {
    guard let inflater = PerMessageInflater(windowBits: windowBits, noContextTakeover: noContextTakeover) else {
        fuzzCheck(false, "PerMessageInflater could not be created")
        return
    }
    let reference = ReferenceInflater(windowBits: windowBits, noContextTakeover: noContextTakeover)
    for message in messages {
        let expected = reference.message(message, limit: limit)
        let actual = inflateMessage(inflater, frames: frames(message, seed: cutSeed), limit: limit)
        switch (expected, actual) {
        case (.inflated(let bytes), .success(let output)):
            fuzzCheck(Array(output.readableBytesView) == bytes,
                      "inflated \(hex(output)), zlib gives \(hex(ByteBuffer(bytes: bytes)))")
        case (.tooLarge, .failure(.messageTooLarge(limit: limit))), (.invalid, .failure(.invalidCompressedData)):
            return  // the connection would fail here
        default:
            fuzzCheck(false, "zlib says \(expected), PerMessageInflater gave \(actual) (limit \(limit))")
        }
    }
}

/// Property 3 and 4.
private func roundTrip(_ messages: [[UInt8]], windowBits: Int, noContextTakeover: Bool, level: Int, memoryLevel: Int,
                       shared: Bool, cutSeed: UInt8) {
    guard let deflater = PerMessageDeflater(windowBits: windowBits, memoryLevel: memoryLevel, level: level,
                                            noContextTakeover: noContextTakeover),
        let inflater = PerMessageInflater(windowBits: windowBits, noContextTakeover: noContextTakeover)
    else {
        fuzzCheck(false, "zlib streams could not be created")
        return
    }
    let allocator = ByteBufferAllocator()
    let sharedCompressor = SharedMessageCompressor(memoryLevel: memoryLevel, level: level)
    for message in messages {
        let split = message.isEmpty ? 0 : Int(message[0]) % (message.count + 1)
        let prefix = split == 0 ? nil : ByteBuffer(bytes: message[..<split])
        let payload = ByteBuffer(bytes: message[split...])
        let headroom = message.count % 2 == 0 ? 0 : 10
        let compressedOrNil = deflater.compress(prefix: prefix, payload: payload, headroom: headroom, allocator: allocator)
        guard let compressed = compressedOrNil else {
            fuzzCheck(false, "PerMessageDeflater failed on \(message.count) bytes")
            return
        }
        fuzzCheck(compressed.readerIndex == headroom, "compressed output without its headroom")
        let compressedBytes = Array(compressed.readableBytesView)
        if noContextTakeover, message.count > 0 {
            // One byte less than the message must not fit (a fresh inflater: every message stands alone).
            let tight = PerMessageInflater(windowBits: windowBits, noContextTakeover: true)!
            let refused = inflateMessage(tight, frames: frames(compressedBytes, seed: cutSeed), limit: message.count - 1)
            guard case .failure(.messageTooLarge) = refused else {
                fuzzCheck(false, "\(message.count) bytes inflated within a limit of \(message.count - 1): \(refused)")
                return
            }
        }
        let inflated = inflateMessage(inflater, frames: frames(compressedBytes, seed: cutSeed), limit: message.count)
        guard case .success(let output) = inflated, Array(output.readableBytesView) == message else {
            fuzzCheck(false, "round trip of \(message.count) bytes (prefix \(split)) gave \(inflated)")
            return
        }

        guard shared else { continue }
        guard let sharedPayload = sharedCompressor.compressedPayload(payload, windowBits: windowBits, allocator: allocator),
            let cached = sharedCompressor.compressedPayload(payload, windowBits: windowBits, allocator: allocator)
        else {
            fuzzCheck(false, "SharedMessageCompressor failed on \(payload.readableBytes) bytes")
            return
        }
        fuzzCheck(cached == sharedPayload, "the cached compressed payload differs")
        var wire = ByteBuffer()
        if let prefix { SharedMessageCompressor.writeStoredBlock(prefix, to: &wire) }
        wire.writeImmutableBuffer(sharedPayload)
        let fresh = PerMessageInflater(windowBits: windowBits, noContextTakeover: true)!
        let sharedInflated = inflateMessage(fresh, frames: frames(Array(wire.readableBytesView), seed: cutSeed),
                                            limit: message.count)
        guard case .success(let sharedOutput) = sharedInflated, Array(sharedOutput.readableBytesView) == message else {
            fuzzCheck(false, "shared compressor round trip of \(message.count) bytes gave \(sharedInflated)")
            return
        }
    }
}

/// A 64 MiB run of zeros, compressed (about 64 KiB), must stop at a 1 MiB limit with at most 1 MiB allocated.
private let bombChecked: Bool = {
    let deflater = PerMessageDeflater(windowBits: 15, memoryLevel: 9, level: 9, noContextTakeover: true)!
    let zeros = ByteBuffer(repeating: 0, count: 64 << 20)
    let bomb = deflater.compress(prefix: nil, payload: zeros, headroom: 0, allocator: ByteBufferAllocator())!
    let inflater = PerMessageInflater(windowBits: 15, noContextTakeover: true)!
    let result = inflateMessage(inflater, frames: [bomb], limit: 1 << 20)
    guard case .failure(.messageTooLarge(limit: 1 << 20)) = result else {
        fatalError("a \(bomb.readableBytes)-byte deflate bomb was not refused: \(result)")
    }
    return true
}()

/// Runs once before any input: the bomb check (seconds of work on a loaded machine) must not count against
/// libFuzzer's per-input `-timeout`.
@_cdecl("LLVMFuzzerInitialize")
public func initialize(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>) -> CInt {
    precondition(bombChecked)
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    let options = input.byte()
    let limitByte = input.byte()
    let cutSeed = input.byte()
    let noContextTakeover = options & 0x2 != 0
    let windowBits = [9, 11, 13, 15][Int(options >> 2) & 0x3]
    let limit = limitByte == 255 ? 1 << 20 : Int(limitByte) * 64
    let messages = messages(in: input.rest)
    if options & 0x1 == 0 {
        inflateClientMessages(messages, windowBits: windowBits, noContextTakeover: noContextTakeover, limit: limit,
                              cutSeed: cutSeed)
    } else {
        roundTrip(messages, windowBits: windowBits, noContextTakeover: noContextTakeover,
                  level: [0, 1, 6, 9][Int(options >> 4) & 0x3], memoryLevel: options & 0x40 != 0 ? 1 : 8,
                  shared: options & 0x80 != 0, cutSeed: cutSeed)
    }
    return 0
}
