import ArgumentParser
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// `starling-feed`: a demo price feed (issue 8). Publishes random-walk prices for a list of symbols over plain TCP
/// STOMP, one JSON SEND per update to `<prefix><SYMBOL>`, with `x-key:<SYMBOL>` for per-key conflation. Meant for
/// `last-value` topics and the ticker page; not a load generator (that is `starling-loadtest`).
@main
struct StarlingFeed: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "starling-feed",
        abstract: "Publishes random-walk prices for a list of symbols over plain TCP STOMP."
    )

    @Option(help: "Broker address.") var host = "127.0.0.1"
    @Option(help: "Broker's plain TCP STOMP port.") var port = 61613
    @Option(help: "CONNECT login.") var login = "feed"
    @Option(help: "CONNECT passcode.") var passcode: String?
    @Option(help: "CONNECT host header (virtual host).") var vhost = "/"
    @Option(help: "Comma-separated symbols; default: --count generated ones.") var symbols: String?
    @Option(help: "How many symbols to generate when --symbols is not given.") var count = 20
    @Option(help: "Updates per second over all symbols.") var rate = 50.0
    @Option(help: "Seconds to run (0 = until stopped).") var duration = 0.0
    @Option(help: "Destination prefix; the symbol is appended.") var prefix = "/topic/prices."
    @Option(help: "Random seed (same seed, same prices).") var seed: UInt64 = 1

    func validate() throws {
        guard self.rate > 0, self.rate <= 1_000_000 else { throw ValidationError("--rate must be in (0, 1000000]") }
        guard self.duration >= 0 else { throw ValidationError("--duration must be >= 0") }
        guard (1...100_000).contains(self.count) else { throw ValidationError("--count must be 1...100000") }
        guard self.prefix.hasPrefix("/") else { throw ValidationError("--prefix must be a destination prefix such as /topic/prices.") }
    }

    func run() throws {
        let names = self.symbols.map { $0.split(separator: ",").map(String.init).filter { !$0.isEmpty } }
            ?? (1...self.count).map { String(format: "SYM%04d", $0) }
        guard !names.isEmpty else { throw ValidationError("--symbols is empty") }
        var random = SplitMix64(seed: self.seed)
        var book = names.map { Quote(symbol: $0, open: Double(2_000 + random.next() % 48_000) / 100) }

        let socket = try FeedSocket(host: self.host, port: self.port)
        var connect = "CONNECT\naccept-version:1.2\nhost:\(self.vhost)\nlogin:\(self.login)\nheart-beat:0,0\n"
        if let passcode = self.passcode { connect += "passcode:\(passcode)\n" }
        try socket.send(connect + "\n\0")
        let answer = try socket.readFrame()
        guard answer.hasPrefix("CONNECTED") else { throw FeedError("the broker did not accept CONNECT:\n\(answer)") }
        // From here on one reader thread reads: the DISCONNECT's RECEIPT ends the run; anything else the broker says
        // is an ERROR (nothing else is asked for): report it and stop.
        let disconnected = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            while let frame = try? socket.readFrame() {
                if frame.hasPrefix("RECEIPT") {
                    disconnected.signal()
                    return
                }
                FileHandle.standardError.write(Data("starling-feed: broker said:\n\(frame)\n".utf8))
                Glibc.exit(1)
            }
        }

        let start = Date()
        let interval = 0.01
        var sent = 0
        while self.duration == 0 || Date().timeIntervalSince(start) < self.duration {
            // Paced by the clock, not by counting sleeps (which run long): `rate` per second on average.
            let due = Int(Date().timeIntervalSince(start) * self.rate)
            while sent < due {
                let index = Int(random.next() % UInt64(book.count))
                book[index].step(&random)
                try socket.send(book[index].frame(prefix: self.prefix))
                sent += 1
            }
            Thread.sleep(forTimeInterval: interval)
        }
        try socket.send("DISCONNECT\nreceipt:bye\n\n\0")
        _ = disconnected.wait(timeout: .now() + 5)
        print("starling-feed: \(sent) updates for \(book.count) symbols in \(String(format: "%.1f", Date().timeIntervalSince(start))) s")
    }
}

/// One symbol's price, moving by a small random step (a geometric random walk in cents).
struct Quote {
    let symbol: String
    let open: Double
    var price: Double

    init(symbol: String, open: Double) {
        self.symbol = symbol
        self.open = open
        self.price = open
    }

    mutating func step(_ random: inout SplitMix64) {
        // About +-0.1 % per update, never below a cent.
        let unit = Double(random.next() % 2_001) / 1_000 - 1
        self.price = max(0.01, (self.price * (1 + unit * 0.001) * 100).rounded() / 100)
    }

    func frame(prefix: String) -> String {
        let change = self.price - self.open
        let body = String(
            format: #"{"symbol":"%@","price":%.2f,"change":%.2f,"changePercent":%.3f,"ts":%lld}"#,
            self.symbol, self.price, change, change / self.open * 100, Int64(Date().timeIntervalSince1970 * 1000)
        )
        return "SEND\ndestination:\(prefix)\(self.symbol)\ncontent-type:application/json\nx-key:\(self.symbol)\n"
            + "content-length:\(body.utf8.count)\n\n\(body)\0"
    }
}

/// A small, seedable generator: the same seed gives the same prices.
struct SplitMix64 {
    var state: UInt64
    init(seed: UInt64) { self.state = seed }
    mutating func next() -> UInt64 {
        self.state &+= 0x9E37_79B9_7F4A_7C15
        var z = self.state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

struct FeedError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A blocking TCP socket that writes whole strings and reads NUL-terminated frames.
final class FeedSocket: @unchecked Sendable {
    private let fd: Int32
    private var buffer: [UInt8] = []

    init(host: String, port: Int) throws {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var info: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &info) == 0, let first = info else {
            throw FeedError("cannot resolve \(host)")
        }
        defer { freeaddrinfo(info) }
        let fd = socket(first.pointee.ai_family, first.pointee.ai_socktype, first.pointee.ai_protocol)
        guard fd >= 0, Glibc.connect(fd, first.pointee.ai_addr, first.pointee.ai_addrlen) == 0 else {
            throw FeedError("cannot connect to \(host):\(port): \(String(cString: strerror(errno)))")
        }
        self.fd = fd
    }

    deinit { close(self.fd) }

    func send(_ text: String) throws {
        var bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeMutableBytes { Glibc.send(self.fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            guard written > 0 else { throw FeedError("the broker closed the connection") }
            offset += written
        }
    }

    /// The next frame (without its NUL), heart-beat newlines skipped.
    func readFrame() throws -> String {
        while true {
            while self.buffer.first == UInt8(ascii: "\n") || self.buffer.first == UInt8(ascii: "\r") { self.buffer.removeFirst() }
            if let end = self.buffer.firstIndex(of: 0) {
                let frame = String(decoding: self.buffer[..<end], as: UTF8.self)
                self.buffer.removeFirst(end + 1)
                return frame
            }
            var chunk = [UInt8](repeating: 0, count: 4096)
            let count = chunk.withUnsafeMutableBytes { recv(self.fd, $0.baseAddress, $0.count, 0) }
            guard count > 0 else { throw FeedError("the broker closed the connection") }
            self.buffer.append(contentsOf: chunk[..<count])
        }
    }
}
