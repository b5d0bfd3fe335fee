// Linux only: CI and the benchmark machines are Linux, and the malloc gate is recorded there.
import Glibc

/// A blocking TCP socket to 127.0.0.1, the benchmark's client side.
///
/// Setup (handshakes, CONNECT, SUBSCRIBE) may allocate; the measured path only calls `writeAll(_:)` on
/// bytes built in advance and `read(into:)` on a buffer owned by the caller, so the client adds no
/// allocation per delivered message and the malloc count is the server's.
struct LoopbackSocket {
    enum Failure: Error, CustomStringConvertible {
        case system(String, Int32)
        case closed
        case unexpected(String)

        var description: String {
            switch self {
            case let .system(call, code): "\(call) failed: errno \(code)"
            case .closed: "connection closed by the server"
            case let .unexpected(text): text
            }
        }
    }

    let descriptor: Int32

    static func connect(port: Int) throws -> LoopbackSocket {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { throw Failure.system("socket", errno) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = in_addr_t(UInt32(0x7F00_0001).bigEndian)
        let result = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard result == 0 else {
            let code = errno
            Glibc.close(descriptor)
            throw Failure.system("connect", code)
        }
        var noDelay: Int32 = 1
        _ = setsockopt(descriptor, Int32(IPPROTO_TCP), TCP_NODELAY, &noDelay, socklen_t(MemoryLayout<Int32>.size))
        return LoopbackSocket(descriptor: descriptor)
    }

    func writeAll(_ bytes: UnsafeRawBufferPointer) throws {
        var offset = 0
        while offset < bytes.count {
            let written = Glibc.write(self.descriptor, bytes.baseAddress! + offset, bytes.count - offset)
            if written < 0 {
                if errno == EINTR { continue }
                throw Failure.system("write", errno)
            }
            offset += written
        }
    }

    func writeAll(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try self.writeAll($0) }
    }

    /// Reads what is available (blocking until something is) into `buffer`; returns the byte count.
    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        while true {
            let count = Glibc.read(self.descriptor, buffer.baseAddress!, buffer.count)
            if count > 0 { return count }
            if count == 0 { throw Failure.closed }
            if errno == EINTR { continue }
            throw Failure.system("read", errno)
        }
    }

    /// Setup only: reads until `marker` has been seen in the stream, returns everything read so far.
    func readUntil(_ marker: String, startingWith initial: [UInt8] = []) throws -> [UInt8] {
        let needle = Array(marker.utf8)
        var received = initial
        var chunk = [UInt8](repeating: 0, count: 4096)
        while received.firstRange(of: needle) == nil {
            let count = try chunk.withUnsafeMutableBytes { try self.read(into: $0) }
            received.append(contentsOf: chunk[0..<count])
        }
        return received
    }

    /// Setup only: reads until a frame containing `marker` has been read through its terminating NUL.
    func readThroughFrame(containing marker: String, startingWith initial: [UInt8] = []) throws {
        let needle = Array(marker.utf8)
        var received = initial
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            if let start = received.firstRange(of: needle), received[start.upperBound...].contains(0) { return }
            let count = try chunk.withUnsafeMutableBytes { try self.read(into: $0) }
            received.append(contentsOf: chunk[0..<count])
        }
    }

    func close() {
        _ = Glibc.close(self.descriptor)
    }
}
