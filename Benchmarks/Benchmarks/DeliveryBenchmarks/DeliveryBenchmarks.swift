import Benchmark
import MallocInterposerSwift
import NIOCore
import StarlingBroker
import StarlingSTOMP
import StarlingWebSocket

/// Mallocs per 1000 delivered MESSAGE frames (the whole process: server, publisher, subscribers).
/// Gated in CI. An integer metric, hence per 1000 rather than per delivery.
let mallocsPerKiloDelivery = BenchmarkMetric.custom("mallocsPerKiloDelivery")
/// MESSAGE frames delivered per second over the measured round. Reported, never gated (2 shared cores).
let deliveriesPerSecond = BenchmarkMetric.custom("deliveriesPerSecond", polarity: .prefersLarger, useScalingFactor: false)

/// Tolerances for the static thresholds in `Thresholds/`: only the malloc metrics are recorded there
/// (`benchmarks/guard.sh --update`), so only they are checked; time and throughput are only reported.
/// A fan-out round's malloc count moves a little with how writes batch into loop ticks, hence 3 %.
var fanoutTolerance: BenchmarkThresholds { BenchmarkThresholds(relative: [.p90: 3.0]) }
/// The micro benchmarks allocate exactly the same every iteration: any extra malloc is a regression.
var exactTolerance: BenchmarkThresholds { BenchmarkThresholds(relative: [.p90: 0.5], absolute: [.p90: 0]) }

let benchmarks: @Sendable () -> Void = {
    fanoutBenchmark(name: "fanout-ws", transport: .webSocket)
    fanoutBenchmark(name: "fanout-tcp", transport: .tcp)
    parserBenchmark()
    brokerMessageBenchmark()
    webSocketHeaderBenchmark()
}

/// One published MESSAGE fanned out to 200 subscribers of one topic, on real loopback sockets.
/// One iteration publishes 50 messages and waits until all 10,000 deliveries arrived.
func fanoutBenchmark(name: String, transport: FanoutFixture.Transport) {
    let fixture = FanoutFixture(transport: transport, subscriberCount: 200, messagesPerRound: 50)
    Benchmark(
        name,
        configuration: .init(
            metrics: [.mallocCountTotal, mallocsPerKiloDelivery, deliveriesPerSecond, .wallClock, .throughput],
            timeUnits: .milliseconds,
            warmupIterations: 5,
            maxDuration: .seconds(3),
            maxIterations: 1_000,
            thresholds: [.mallocCountTotal: fanoutTolerance, mallocsPerKiloDelivery: fanoutTolerance],
            setup: { try await fixture.start() },
            teardown: { await fixture.stop() }
        )
    ) { benchmark in
        let mallocsBefore = MallocInterposerSwift.getStatistics().mallocCount
        let start = ContinuousClock.now
        do {
            try fixture.publishAndAwaitDelivery()
        } catch {
            benchmark.error("\(name): \(error)")
            return
        }
        let elapsed = ContinuousClock.now - start
        let mallocs = MallocInterposerSwift.getStatistics().mallocCount - mallocsBefore
        let deliveries = fixture.deliveriesPerRound
        benchmark.measurement(mallocsPerKiloDelivery, mallocs * 1_000 / deliveries)
        let nanoseconds = Double(elapsed.components.seconds) * 1e9 + Double(elapsed.components.attoseconds) / 1e9
        benchmark.measurement(deliveriesPerSecond, Int(Double(deliveries) * 1e9 / max(nanoseconds, 1)))
    }
}

/// A typical MESSAGE frame as a subscriber's client library would parse it.
let typicalMessageFrame = "MESSAGE\nsubscription:sub-7\nmessage-id:m-1f3a-000000000042\ndestination:/topic/bench.fanout\n"
    + "content-type:application/json\ncontent-length:\(FanoutFixture.body.utf8.count)\n\n\(FanoutFixture.body)\0"

var microConfiguration: Benchmark.Configuration {
    Benchmark.Configuration(
        metrics: [.mallocCountTotal, .wallClock, .throughput],
        warmupIterations: 10,
        scalingFactor: .kilo,
        maxDuration: .seconds(2),
        thresholds: [.mallocCountTotal: exactTolerance]
    )
}

/// `STOMPFrameParser.next(_:)` on one whole MESSAGE frame (1000 frames per iteration).
func parserBenchmark() {
    Benchmark("parse-message-frame", configuration: microConfiguration) { benchmark in
        let frameBytes = ByteBuffer(string: typicalMessageFrame)
        var parser = STOMPFrameParser()
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            var input = frameBytes
            blackHole(try? parser.next(&input))
        }
    }
}

/// `BrokerMessage.init`: the publish-time encoding of the part of a MESSAGE every subscriber shares.
func brokerMessageBenchmark() {
    Benchmark("broker-message-encode", configuration: microConfiguration) { benchmark in
        let headers: STOMPHeaders = [
            "destination": FanoutFixture.destination, "content-type": "application/json", "receipt": "r-1",
        ]
        let body = ByteBuffer(string: FanoutFixture.body)
        let allocator = ByteBufferAllocator()
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            blackHole(
                BrokerMessage(
                    destination: FanoutFixture.destination, messageID: "m-1f3a-000000000042", sendHeaders: headers,
                    body: body, allocator: allocator
                )
            )
        }
    }
}

/// `WebSocketFrameEncoder.writeFrameHeader` for an unmasked text frame, into a reused buffer.
func webSocketHeaderBenchmark() {
    Benchmark("websocket-header-write", configuration: microConfiguration) { benchmark in
        var buffer = ByteBufferAllocator().buffer(capacity: 64)
        let payloadLength = typicalMessageFrame.utf8.count
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            buffer.clear()
            WebSocketFrameEncoder.writeFrameHeader(
                opcode: .text, fin: true, rsv1: false, payloadLength: payloadLength, maskingKey: nil, to: &buffer
            )
            blackHole(buffer.readableBytes)
        }
    }
}
