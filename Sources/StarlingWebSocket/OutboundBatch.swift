import NIOCore

/// The small writes of one connection in one event-loop tick, copied into one buffer and handed to the pipeline
/// as a single write at flush time.
///
/// A fan-out delivery is ~150 bytes: copying it costs less than a pipeline write plus a pending-write entry (and
/// an iovec) per piece, which is what writing the per-subscriber head and the shared body separately costs.
/// Bodies above `maxCopiedBytes` are still written without copying; the caller writes the batch out first so
/// order is kept.
///
/// Idle connections keep no buffer: it is taken at the first write of a tick and given to the pipeline at the
/// flush. Its capacity follows the previous tick's size, so a busy connection allocates once per tick.
public struct OutboundBatch {
    /// Larger pieces are written as their own buffers (no copy).
    public static let maxCopiedBytes = 8 * 1024
    /// Cap on the capacity carried over from one tick to the next.
    @usableFromInline static let maxCapacityHint = 64 * 1024
    @usableFromInline static let minimumCapacity = 256

    @usableFromInline var buffer: ByteBuffer?
    @usableFromInline var capacityHint: UInt32 = 0

    public init() {}

    /// True when nothing is waiting to be written.
    @inlinable public var isEmpty: Bool { self.buffer == nil }

    /// Takes the buffer to append at least `count` bytes to; give it back with `put`.
    @inlinable
    public mutating func take(reserving count: Int, allocator: ByteBufferAllocator) -> ByteBuffer {
        if var buffer = self.buffer.take() {
            buffer.reserveCapacity(minimumWritableBytes: count)
            return buffer
        }
        return allocator.buffer(capacity: max(Int(self.capacityHint), count, Self.minimumCapacity))
    }

    @inlinable
    public mutating func put(_ buffer: ByteBuffer) {
        self.buffer = buffer
    }

    /// The bytes to write now, if any; the batch is empty afterwards.
    @inlinable
    public mutating func drain() -> ByteBuffer? {
        guard let buffer = self.buffer.take() else { return nil }
        self.capacityHint = UInt32(min(buffer.readableBytes, Self.maxCapacityHint))
        return buffer
    }

    /// Forgets what was batched (the connection is gone).
    @inlinable
    public mutating func discard() {
        self.buffer = nil
        self.capacityHint = 0
    }
}
