import Foundation
import NIOConcurrencyHelpers

/// The live progress line on stderr: rewritten in place (`\r`) once a second on a terminal, a plain line
/// every 5 s otherwise, nothing with `--quiet`. Called only from the runner's task, never from event loops.
final class ProgressReporter: Sendable {
    private struct State {
        var lastLine: UInt64 = 0
        var drewInPlace = false
    }

    private let quiet: Bool
    private let isTerminal: Bool
    private let state = NIOLockedValueBox(State())

    init(quiet: Bool) {
        self.quiet = quiet
        self.isTerminal = isatty(2) == 1
    }

    private var interval: UInt64 { self.isTerminal ? 1_000_000_000 : 5_000_000_000 }

    /// Prints `line` if the interval has passed (or `force`).
    func show(_ line: String, force: Bool = false) {
        guard !self.quiet else { return }
        let now = MonotonicClock.nanoseconds()
        let shouldPrint = self.state.withLockedValue { state -> Bool in
            guard force || now - state.lastLine >= self.interval else { return false }
            state.lastLine = now
            state.drewInPlace = self.isTerminal
            return true
        }
        guard shouldPrint else { return }
        let text = self.isTerminal ? "\r\u{1B}[K" + line : line + "\n"
        FileHandle.standardError.write(Data(text.utf8))
    }

    func connecting(opened: Int, failed: Int, of total: Int) {
        self.show("connecting \(opened)/\(total)" + (failed > 0 ? " (\(failed) failed)" : ""))
    }

    func running(elapsed: Double, sentPerSecond: Double, deliveredPerSecond: Double, p99: Double, connections: Int,
                 phase: String) {
        self.show(String(format: "%6.1fs %@ sent %.0f/s  delivered %.0f/s  p99 %.3f ms  conns %d", elapsed, phase,
                         sentPerSecond, deliveredPerSecond, p99, connections))
    }

    /// Ends the in-place line so the summary starts on a fresh line.
    func finish() {
        guard !self.quiet else { return }
        let drew = self.state.withLockedValue { state -> Bool in
            defer { state.drewInPlace = false }
            return state.drewInPlace
        }
        if drew { FileHandle.standardError.write(Data("\n".utf8)) }
    }
}

/// Samples the server (`--server-pid`) and this process: CPU over the measured window, RSS before, after and
/// at its peak.
struct ProcessMonitor {
    let serverPID: Int32?
    private(set) var serverBefore: ProcessSample?
    private(set) var serverStart: ProcessSample?
    private(set) var serverEnd: ProcessSample?
    private(set) var serverAfterRSS: UInt64?
    private(set) var serverPeakRSS: UInt64 = 0
    private(set) var selfStart: ProcessSample?
    private(set) var selfEnd: ProcessSample?
    private(set) var serverVanished = false
    /// With `recordSeries`, every server sample: (monotonic ns, RSS bytes, open file descriptors).
    var recordSeries = false
    private(set) var series: [(nanoseconds: UInt64, rss: UInt64, files: Int?)] = []

    init(serverPID: Int32?) {
        self.serverPID = serverPID
    }

    private mutating func sampleServer() -> ProcessSample? {
        guard let pid = self.serverPID else { return nil }
        guard let sample = ProcFS.sample(pid: pid) else {
            self.serverVanished = true
            return nil
        }
        self.serverPeakRSS = max(self.serverPeakRSS, sample.rssBytes)
        if self.recordSeries {
            self.series.append((sample.nanoseconds, sample.rssBytes, ProcFS.openFiles(pid: pid)))
        }
        return sample
    }

    mutating func sampleBefore() { self.serverBefore = self.sampleServer() }
    /// A periodic sample, for the peak RSS.
    mutating func tick() { _ = self.sampleServer() }
    /// RSS "after" (for `connections`: once every connection is up).
    mutating func sampleAfter() { self.serverAfterRSS = self.sampleServer()?.rssBytes }

    mutating func markStart() {
        self.serverStart = self.sampleServer()
        self.selfStart = ProcFS.sample(pid: nil)
    }

    mutating func markEnd() {
        self.serverEnd = self.sampleServer()
        self.selfEnd = ProcFS.sample(pid: nil)
        if self.serverAfterRSS == nil { self.serverAfterRSS = self.serverEnd?.rssBytes }
    }

    var clientCPUPercent: Double {
        guard let start = self.selfStart, let end = self.selfEnd else { return 0 }
        return ProcessSample.cpuPercent(from: start, to: end, ticksPerSecond: ProcFS.ticksPerSecond)
    }

    /// The server figures; with `recordSeries`, also the RSS and open-files series, time in seconds since
    /// `seriesOrigin` (monotonic ns).
    func server(connections: Int?, seriesOrigin: UInt64? = nil) -> LoadtestResult.Server? {
        guard self.serverPID != nil else { return nil }
        var server = LoadtestResult.Server()
        if self.recordSeries {
            let origin = seriesOrigin ?? self.series.first?.nanoseconds ?? 0
            func seconds(_ nanoseconds: UInt64) -> Double {
                let signed = Double(Int64(bitPattern: nanoseconds &- origin)) / 1e9
                return (signed * 1000).rounded() / 1000
            }
            server.rssSeries = self.series.map { LoadtestResult.SeriesPoint(t: seconds($0.nanoseconds), value: $0.rss) }
            server.openFilesSeries = self.series.compactMap { sample in
                sample.files.map { LoadtestResult.SeriesPoint(t: seconds(sample.nanoseconds), value: UInt64($0)) }
            }
        }
        if let start = self.serverStart, let end = self.serverEnd {
            server.cpuPercent = ProcessSample.cpuPercent(from: start, to: end, ticksPerSecond: ProcFS.ticksPerSecond)
        }
        server.rssBytesBefore = self.serverBefore?.rssBytes ?? 0
        server.rssBytesAfter = self.serverAfterRSS ?? 0
        server.rssBytesPeak = self.serverPeakRSS
        if let connections {
            let grown = Double(server.rssBytesAfter) - Double(server.rssBytesBefore)
            server.rssBytesPerConnection = connections > 0 ? grown / Double(connections) : 0
        }
        return server
    }
}
