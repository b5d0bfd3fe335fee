/// The client-to-server masking transform (RFC 6455 §5.3): `out[i] = in[i] ^ key[(offset + i) % 4]`.
///
/// Works a machine word (8 bytes) at a time: the 4-byte key is repeated twice, rotated to the starting phase,
/// and XORed against unaligned 8-byte loads; only the last < 8 bytes go byte by byte. The same function unmasks
/// while copying (parser: socket buffer -> payload buffer, one pass, no extra copy) and masks in place (clients).
enum WebSocketMasking {
    /// XORs `source` with the key, starting at key phase `offset`, and stores the result at `destination`
    /// (which may equal `source.baseAddress`).
    @inline(__always)
    static func apply(
        key: (UInt8, UInt8, UInt8, UInt8),
        offset: Int,
        source: UnsafeRawBufferPointer,
        destination: UnsafeMutableRawPointer
    ) {
        let count = source.count
        guard count > 0, let src = source.baseAddress else { return }
        // Key bytes in memory order, rotated so byte j holds key[(offset + j) % 4]; loading it as a UInt64
        // makes the XOR independent of endianness.
        var wide: UInt64 = 0
        withUnsafeMutableBytes(of: &wide) { bytes in
            withUnsafeBytes(of: key) { keyBytes in
                for j in 0..<8 { bytes[j] = keyBytes[(offset &+ j) & 3] }
            }
        }
        var i = 0
        while i &+ 32 <= count {
            // Four independent words per iteration keep the loop short and let the CPU pipeline the loads.
            let a = src.loadUnaligned(fromByteOffset: i, as: UInt64.self)
            let b = src.loadUnaligned(fromByteOffset: i &+ 8, as: UInt64.self)
            let c = src.loadUnaligned(fromByteOffset: i &+ 16, as: UInt64.self)
            let d = src.loadUnaligned(fromByteOffset: i &+ 24, as: UInt64.self)
            destination.storeBytes(of: a ^ wide, toByteOffset: i, as: UInt64.self)
            destination.storeBytes(of: b ^ wide, toByteOffset: i &+ 8, as: UInt64.self)
            destination.storeBytes(of: c ^ wide, toByteOffset: i &+ 16, as: UInt64.self)
            destination.storeBytes(of: d ^ wide, toByteOffset: i &+ 24, as: UInt64.self)
            i &+= 32
        }
        while i &+ 8 <= count {
            let word = src.loadUnaligned(fromByteOffset: i, as: UInt64.self)
            destination.storeBytes(of: word ^ wide, toByteOffset: i, as: UInt64.self)
            i &+= 8
        }
        withUnsafeBytes(of: wide) { keyBytes in
            while i < count {
                let byte = src.load(fromByteOffset: i, as: UInt8.self) ^ keyBytes[i & 7]
                destination.storeBytes(of: byte, toByteOffset: i, as: UInt8.self)
                i &+= 1
            }
        }
    }
}
