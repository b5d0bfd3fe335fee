import NIOCore
import StarlingSTOMP

/// A published message, immutable and shared by every loop and subscriber it reaches.
///
/// The MESSAGE frame is split in two (DESIGN.md, threading model): the per-subscriber head
/// (`MESSAGE`, `subscription`, `ack`) written per delivery, and `shared`: every other header, the blank line,
/// the body and the NUL, encoded once at publish time and written to every subscriber without copying.
public final class BrokerMessage: Sendable {
    public let destination: String
    /// What the loops route it by: the destination, except for feeds that share one (a presence feed's count-only
    /// subscribers get their own route).
    public let route: String
    /// Position in its room's stream or its presence feed (`x-offset`); 0 for everything else.
    public let offset: UInt64
    /// How it reaches slow subscribers and how often at most (its destination's `DeliveryPolicy`, found once when
    /// published).
    public let delivery: DeliveryPolicy
    public let messageID: String
    /// When it was published (`NIODeadline` uptime nanoseconds), for the delivery latency metric.
    public let publishedAt: UInt64
    public let headers: STOMPHeaders
    public let body: ByteBuffer
    /// True when the whole frame is valid UTF-8 (a WebSocket text message may carry it).
    public let isUTF8: Bool
    /// Shared part for STOMP 1.2 (and 1.1 and 1.0 when no header needs escaping).
    public let shared: ByteBuffer
    /// Shared part for 1.1 / 1.0 when a header value has a character those versions escape differently.
    private let shared11: ByteBuffer?
    private let shared10: ByteBuffer?

    /// Headers a SEND carries that belong to the SEND itself and are not passed on in MESSAGE frames:
    /// `receipt`, `transaction`, `content-length`, `destination`, `message-id`, `subscription`, `ack`; and
    /// `user-name`, which only the server sets (the sender's login), so clients cannot pose as someone else.
    /// A switch on the length first: this runs for every header of every published message, and hashing the name
    /// for a set lookup cost more than the whole comparison.
    public static func isSendOnly(_ name: String) -> Bool {
        switch name.utf8.count {
        case 3: name == "ack"
        case 7: name == "receipt"
        case 9: name == "user-name"
        case 10: name == "message-id"
        case 11: name == "transaction" || name == "destination"
        case 12: name == "subscription"
        case 14: name == "content-length"
        default: false
        }
    }

    /// `serverHeaders` follow `destination` and `message-id`; a SEND header of the same name is not passed on.
    public init(
        destination: String, messageID: String, sendHeaders: STOMPHeaders, body: ByteBuffer, allocator: ByteBufferAllocator,
        serverHeaders: [(name: String, value: String)] = [], offset: UInt64 = 0, route: String? = nil,
        delivery: DeliveryPolicy = .standard
    ) {
        self.destination = destination
        self.route = route ?? destination
        self.offset = offset
        self.delivery = delivery
        self.messageID = messageID
        self.publishedAt = NIODeadline.now().uptimeNanoseconds
        self.body = body
        var headers = STOMPHeaders()
        headers.reserveCapacity(sendHeaders.count + serverHeaders.count + 2)
        headers.add("destination", destination)
        headers.add("message-id", messageID)
        var needsVersionEscaping = Self.needsVersionSpecificEscaping(destination) || Self.needsVersionSpecificEscaping(messageID)
        for (name, value) in serverHeaders {
            headers.add(name, value)
            if !needsVersionEscaping {
                needsVersionEscaping = Self.needsVersionSpecificEscaping(name) || Self.needsVersionSpecificEscaping(value)
            }
        }
        for (name, value) in sendHeaders where !Self.isSendOnly(name) {
            // Repeated headers: the first one wins (STOMP 1.2), so pass on only the first.
            if headers.contains(name) { continue }
            headers.add(name, value)
            if !needsVersionEscaping {
                needsVersionEscaping = Self.needsVersionSpecificEscaping(name) || Self.needsVersionSpecificEscaping(value)
            }
        }
        self.headers = headers
        self.isUTF8 = UTF8Check.isValid(body)
        self.shared = Self.encodeShared(headers: headers, body: body, version: .v1_2, allocator: allocator)
        if needsVersionEscaping {
            self.shared11 = Self.encodeShared(headers: headers, body: body, version: .v1_1, allocator: allocator)
            self.shared10 = Self.encodeShared(headers: headers, body: body, version: .v1_0, allocator: allocator)
        } else {
            self.shared11 = nil
            self.shared10 = nil
        }
    }

    /// The shared part to write to a subscriber speaking `version`.
    public func shared(for version: STOMPVersion) -> ByteBuffer {
        switch version {
        case .v1_2: self.shared
        case .v1_1: self.shared11 ?? self.shared
        case .v1_0: self.shared10 ?? self.shared
        }
    }

    /// Size in bytes of the frame a subscriber receives (without the per-subscriber head).
    public var sharedSize: Int { self.shared.readableBytes }

    private static func encodeShared(headers: STOMPHeaders, body: ByteBuffer, version: STOMPVersion, allocator: ByteBufferAllocator) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: 64 + body.readableBytes + headers.count * 24)
        STOMPFrameEncoder.writeHeadersAndBody(headers, body: body, to: &buffer, version: version)
        return buffer
    }

    /// Characters that 1.0, 1.1 and 1.2 escape differently (1.2 escapes \r, 1.1 does not; 1.0 escapes nothing).
    private static func needsVersionSpecificEscaping(_ string: String) -> Bool {
        string.utf8.contains { $0 == UInt8(ascii: "\r") || $0 == UInt8(ascii: "\n") || $0 == UInt8(ascii: ":") || $0 == UInt8(ascii: "\\") }
    }
}

/// UTF-8 validity of a buffer, with an ASCII fast path.
public enum UTF8Check {
    public static func isValid(_ buffer: ByteBuffer) -> Bool {
        buffer.withUnsafeReadableBytes { bytes in
            var index = 0
            let count = bytes.count
            // ASCII fast path, 8 bytes at a time.
            while index + 8 <= count {
                let word = bytes.loadUnaligned(fromByteOffset: index, as: UInt64.self)
                if word & 0x8080_8080_8080_8080 != 0 { break }
                index += 8
            }
            while index < count, bytes[index] < 0x80 { index += 1 }
            if index == count { return true }
            return String(validating: UnsafeRawBufferPointer(rebasing: bytes[index...]), as: UTF8.self) != nil
        }
    }
}
