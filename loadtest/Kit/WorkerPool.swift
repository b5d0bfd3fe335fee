import Foundation
import NIOConcurrencyHelpers

/// `connections --workers K`: the parent re-executes itself K times, each child opening its share of the
/// connections (one process may hold ~19,000 sockets here), and merges their results.
///
/// Protocol over the child's stdin/stdout, one line each:
///   child -> parent  `connected <opened> <failed>` once all its connections are set up
///   parent -> child  `release` after the hold (or EOF: the parent died)
///   child -> parent  its JSON result on one line, then it exits.
/// The parent measures the server between "all connected" and the release, like the single-process run.
struct WorkerPool {
    let configuration: LoadtestConfiguration

    /// One child's output, collected by a reader thread.
    final class ChildOutput: Sendable {
        let lines = NIOLockedValueBox<[String]>([])
        let finished = NIOLockedValueBox(false)
    }

    func run() async -> LoadtestResult {
        let configuration = self.configuration
        var result = LoadtestResult(configuration: configuration)
        let progress = ProgressReporter(quiet: configuration.quiet)
        var monitor = ProcessMonitor(serverPID: configuration.serverPID)
        monitor.sampleBefore()
        let workers = configuration.workers
        var children: [(process: Process, input: Pipe, output: ChildOutput)] = []
        var first = 0
        for index in 0..<workers {
            let share = configuration.connections / workers + (index < configuration.connections % workers ? 1 : 0)
            let process = Process()
            process.executableURL = URL(fileURLWithPath: Self.executablePath())
            process.arguments = self.childArguments(share: share, firstIndex: first)
            first += share
            let input = Pipe()
            let outputPipe = Pipe()
            process.standardInput = input
            process.standardOutput = outputPipe
            let output = ChildOutput()
            do {
                try process.run()
            } catch {
                result.errors.append("cannot start worker \(index): \(error)")
                continue
            }
            let handle = outputPipe.fileHandleForReading
            Thread.detachNewThread {
                var pending = Data()
                while true {
                    let data = handle.availableData
                    if data.isEmpty { break }
                    pending.append(data)
                    while let newline = pending.firstIndex(of: 10) {
                        let line = String(decoding: pending[pending.startIndex..<newline], as: UTF8.self)
                        pending.removeSubrange(pending.startIndex...newline)
                        output.lines.withLockedValue { $0.append(line) }
                    }
                }
                output.finished.withLockedValue { $0 = true }
            }
            children.append((process, input, output))
        }

        // Wait until every child is connected (or gone).
        while true {
            let waiting = children.filter { child in
                !child.output.finished.withLockedValue { $0 }
                    && !child.output.lines.withLockedValue { $0.contains { $0.hasPrefix("connected ") } }
            }
            let opened = children.reduce(0) { total, child in
                total + (child.output.lines.withLockedValue { $0.first { $0.hasPrefix("connected ") } }
                    .flatMap { Int($0.split(separator: " ")[1]) } ?? 0)
            }
            progress.show("workers: \(children.count - waiting.count)/\(children.count) connected (\(opened) connections)")
            if waiting.isEmpty { break }
            try? await Task.sleep(nanoseconds: 100_000_000)
        }
        monitor.sampleAfter()
        monitor.markStart()
        let began = MonotonicClock.nanoseconds()
        let end = began + UInt64(configuration.holdSeconds * 1e9)
        while MonotonicClock.nanoseconds() < end {
            try? await Task.sleep(nanoseconds: min(1_000_000_000, end - MonotonicClock.nanoseconds()))
            monitor.tick()
            progress.show(String(format: "%6.1fs holding connections in %d workers", Double(MonotonicClock.nanoseconds() - began) / 1e9,
                                 children.count))
        }
        monitor.markEnd()
        for child in children {
            child.input.fileHandleForWriting.write(Data("release\n".utf8))
            try? child.input.fileHandleForWriting.close()
        }
        var openedTotal = 0
        var clientCPU = monitor.clientCPUPercent
        for (index, child) in children.enumerated() {
            child.process.waitUntilExit()
            while !child.output.finished.withLockedValue({ $0 }) { try? await Task.sleep(nanoseconds: 10_000_000) }
            let lines = child.output.lines.withLockedValue { $0 }
            guard let json = lines.last(where: { $0.hasPrefix("{") }),
                let childResult = try? JSONDecoder().decode(LoadtestResult.self, from: Data(json.utf8))
            else {
                result.errors.append("worker \(index) exited with status \(child.process.terminationStatus) without a result")
                result.connections.failed += configuration.connections / workers
                continue
            }
            openedTotal += childResult.connections.opened
            result.connections.opened += childResult.connections.opened
            result.connections.failed += childResult.connections.failed
            result.connections.dropped += childResult.connections.dropped
            clientCPU += childResult.client.cpuPercent
            for error in childResult.errors where !result.errors.contains(error) { result.errors.append(error) }
        }
        progress.finish()
        result.server = monitor.server(connections: openedTotal)
        result.client.cpuPercent = clientCPU
        return result
    }

    private func childArguments(share: Int, firstIndex: Int) -> [String] {
        let c = self.configuration
        var arguments = [
            "connections", "--url", c.url.description, "--connections", String(share), "--heartbeat",
            String(c.heartbeatMilliseconds), "--hold", "0", "--source-addresses", String(c.sourceAddresses),
            "--deflate", c.deflate ? "on" : "off", "--quiet", "--worker-index", String(firstIndex),
        ]
        if let login = c.login { arguments += ["--login", login] }
        if let passcode = c.passcode { arguments += ["--passcode", passcode] }
        if let host = c.virtualHost { arguments += ["--host", host] }
        return arguments
    }

    /// This executable: /proc/self/exe, else argv[0].
    static func executablePath() -> String {
        if let path = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") { return path }
        return CommandLine.arguments[0]
    }

    // MARK: - Child side

    static func announceConnected(opened: Int, failed: Int) {
        FileHandle.standardOutput.write(Data("connected \(opened) \(failed)\n".utf8))
    }

    /// Returns when the parent writes a line (or closes our stdin).
    static func waitForRelease() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            Thread.detachNewThread {
                _ = readLine()
                continuation.resume()
            }
        }
    }
}
