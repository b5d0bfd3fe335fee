#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// CPU time and resident memory of a process, read from /proc (Linux, proc(5)).
public struct ProcessSample: Sendable, Equatable {
    /// utime + stime, in clock ticks.
    public var cpuTicks: UInt64
    public var rssBytes: UInt64
    /// Monotonic time of the sample.
    public var nanoseconds: UInt64

    public init(cpuTicks: UInt64, rssBytes: UInt64, nanoseconds: UInt64) {
        self.cpuTicks = cpuTicks
        self.rssBytes = rssBytes
        self.nanoseconds = nanoseconds
    }

    /// CPU use between two samples, in percent of one core (may exceed 100 on several cores).
    public static func cpuPercent(from start: ProcessSample, to end: ProcessSample, ticksPerSecond: UInt64) -> Double {
        guard end.nanoseconds > start.nanoseconds, ticksPerSecond > 0, end.cpuTicks >= start.cpuTicks else { return 0 }
        let cpuSeconds = Double(end.cpuTicks - start.cpuTicks) / Double(ticksPerSecond)
        let wallSeconds = Double(end.nanoseconds - start.nanoseconds) / 1e9
        return cpuSeconds / wallSeconds * 100
    }
}

public enum ProcFS {
    /// utime + stime from the text of /proc/PID/stat (fields 14 and 15, counted after the `)` that ends the
    /// command name, which may itself contain spaces and parentheses).
    public static func cpuTicks(statText: String) -> UInt64? {
        guard let close = statText.lastIndex(of: ")") else { return nil }
        let fields = statText[statText.index(after: close)...].split(separator: " ")
        // fields[0] is field 3 (state), so field N is fields[N - 3].
        guard fields.count > 12, let utime = UInt64(fields[11]), let stime = UInt64(fields[12]) else { return nil }
        return utime + stime
    }

    /// VmRSS from the text of /proc/PID/status, in bytes.
    public static func rssBytes(statusText: String) -> UInt64? {
        for line in statusText.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            guard parts.count >= 2, let kilobytes = UInt64(parts[1]) else { return nil }
            return kilobytes * 1024
        }
        return nil
    }

    /// Open file descriptors of `pid` (entries of /proc/PID/fd; sockets included), or nil when unreadable.
    public static func openFiles(pid: Int32) -> Int? {
        guard let directory = opendir("/proc/\(pid)/fd") else { return nil }
        defer { closedir(directory) }
        var count = 0
        while let entry = readdir(directory) {
            let name = entry.pointee.d_name.0
            if name != UInt8(ascii: ".") { count += 1 }  // skips "." and ".." (fd names are digits)
        }
        return count
    }

    /// Reads a small /proc file whole.
    public static func read(_ path: String) -> String? {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, 4096) }
            if n <= 0 { break }
            bytes.append(contentsOf: chunk[0..<n])
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// A sample of `pid` ("self" when nil), or nil when the process is gone.
    public static func sample(pid: Int32?) -> ProcessSample? {
        let base = pid.map { "/proc/\($0)" } ?? "/proc/self"
        guard let stat = self.read(base + "/stat"), let ticks = self.cpuTicks(statText: stat),
            let status = self.read(base + "/status"), let rss = self.rssBytes(statusText: status)
        else { return nil }
        return ProcessSample(cpuTicks: ticks, rssBytes: rss, nanoseconds: MonotonicClock.nanoseconds())
    }

    public static var ticksPerSecond: UInt64 { UInt64(max(sysconf(Int32(_SC_CLK_TCK)), 1)) }
}

/// CLOCK_MONOTONIC, shared by every process on the machine (so `--workers` children agree with the parent).
public enum MonotonicClock {
    @inline(__always)
    public static func nanoseconds() -> UInt64 {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        return UInt64(spec.tv_sec) &* 1_000_000_000 &+ UInt64(spec.tv_nsec)
    }
}
