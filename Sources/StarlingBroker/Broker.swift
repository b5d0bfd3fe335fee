import NIOCore

/// The pub/sub core: one `LoopBroker` per event loop plus the shared `InterestTable`.
public final class Broker: Sendable {
    public let loops: [LoopBroker]
    public let interest: InterestTable
    /// Recent `idempotency-key`s of SENDs, shared by all loops.
    public let idempotency: IdempotencyTable

    public init(
        eventLoops: [any EventLoop], queuePolicies: QueuePolicies = QueuePolicies(),
        idempotency: IdempotencyTable = IdempotencyTable()
    ) {
        precondition(!eventLoops.isEmpty)
        self.interest = InterestTable(loopCount: eventLoops.count)
        self.idempotency = idempotency
        self.loops = eventLoops.enumerated().map {
            LoopBroker(index: $0.offset, eventLoop: $0.element, loopCount: eventLoops.count, queuePolicies: queuePolicies)
        }
        for loop in self.loops { loop.broker = self }
    }

    /// The loop broker that owns `eventLoop`'s connections.
    public func loop(for eventLoop: any EventLoop) -> LoopBroker {
        for loop in self.loops where loop.eventLoop === eventLoop { return loop }
        preconditionFailure("event loop \(eventLoop) is not one of the broker's loops")
    }

    /// Tells every registered connection on every loop that the server is shutting down.
    public func shutdownConnections() {
        for loop in self.loops {
            loop.eventLoop.execute { loop.shutdownConnections() }
        }
    }

    /// Ready, unacknowledged and consumer counts of queue `destination` (hops to its owning loop); nil when the queue
    /// holds nothing and has no consumer.
    public func queueStats(_ destination: String) async throws -> (ready: Int, unacked: Int, consumers: Int)? {
        let owner = self.loops[self.loops[0].queueOwner(destination)]
        return try await owner.eventLoop.submit { owner.queueStats(destination) }.get()
    }

    /// Registered connections on all loops (hops to each loop).
    public func connectionCount() async throws -> Int {
        var total = 0
        for loop in self.loops {
            total += try await loop.eventLoop.submit { loop.connectionCount }.get()
        }
        return total
    }
}
