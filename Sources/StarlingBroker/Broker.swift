import Atomics
import NIOCore

/// The pub/sub core: one `LoopBroker` per event loop plus the shared `InterestTable`.
public final class Broker: Sendable {
    public let loops: [LoopBroker]
    public let interest: InterestTable
    /// Recent `idempotency-key`s of SENDs, shared by all loops.
    public let idempotency: IdempotencyTable
    /// Where persistent queue messages are kept (nil: memory only).
    public let store: MessageStore?
    /// How topic messages reach slow subscribers, and how often at most.
    public let deliveryPolicies: DeliveryPolicies
    private let nextStoreID = ManagedAtomic<UInt64>(1)

    public init(
        eventLoops: [any EventLoop], queuePolicies: QueuePolicies = QueuePolicies(), historyPolicies: HistoryPolicies = HistoryPolicies(),
        roomLimits: RoomLimits = RoomLimits(), deliveryPolicies: DeliveryPolicies = DeliveryPolicies(),
        idempotency: IdempotencyTable = IdempotencyTable(), store: MessageStore? = nil
    ) {
        precondition(!eventLoops.isEmpty)
        self.interest = InterestTable(loopCount: eventLoops.count)
        self.idempotency = idempotency
        self.store = store
        self.deliveryPolicies = deliveryPolicies
        self.loops = eventLoops.enumerated().map {
            LoopBroker(
                index: $0.offset, eventLoop: $0.element, loopCount: eventLoops.count, queuePolicies: queuePolicies,
                historyPolicies: historyPolicies, roomLimits: roomLimits, store: store
            )
        }
        for loop in self.loops { loop.broker = self }
    }

    /// The loop broker that owns `eventLoop`'s connections.
    public func loop(for eventLoop: any EventLoop) -> LoopBroker {
        for loop in self.loops where loop.eventLoop === eventLoop { return loop }
        preconditionFailure("event loop \(eventLoop) is not one of the broker's loops")
    }

    /// Tells every registered connection on every loop that the server is shutting down: all at once, or spread
    /// evenly over `window` so that their reconnects do not reach the next node all at once.
    public func shutdownConnections(spreadOver window: TimeAmount = .zero) {
        for loop in self.loops {
            loop.eventLoop.execute { loop.shutdownConnections(spreadOver: window) }
        }
    }

    /// Replaces the policies on every loop (a configuration reload), in one hop per loop; the future completes when
    /// every loop has them.
    public func updatePolicies(queue: QueuePolicies, history: HistoryPolicies, delivery: DeliveryPolicies) -> EventLoopFuture<Void> {
        let futures = self.loops.map { loop in
            loop.eventLoop.submit { loop.updatePolicies(queue: queue, history: history, delivery: delivery) }
        }
        return EventLoopFuture.andAllSucceed(futures, on: self.loops[0].eventLoop)
    }

    /// A new store id (unique and increasing over the broker's life, continuing after recovered ones).
    func makeStoreID() -> UInt64 {
        self.nextStoreID.loadThenWrappingIncrement(ordering: .relaxed)
    }

    /// Puts what the store held back into the queues (each on its owning loop) and waits until it is there.
    /// Call before accepting connections.
    public func restore(_ contents: StoreContents) async throws {
        self.nextStoreID.store(max(contents.nextStoreID, 1), ordering: .relaxed)
        var messages = Array(repeating: [StoredMessage](), count: self.loops.count)
        var bindings = Array(repeating: [(queue: String, pattern: String)](), count: self.loops.count)
        let router = self.loops[0]
        for message in contents.messages { messages[router.queueOwner(message.queue)].append(message) }
        for binding in contents.bindings { bindings[router.queueOwner(binding.queue)].append(binding) }
        var keptMessages = Array(repeating: [KeptMessage](), count: self.loops.count)
        for stored in contents.keptMessages { keptMessages[router.roomHost.owner(of: stored.stream)].append(stored) }
        // Every loop restores its share at the same time.
        let restored = self.loops.map { loop in
            let (mine, myBindings, myRooms) = (messages[loop.index], bindings[loop.index], keptMessages[loop.index])
            return loop.eventLoop.submit {
                loop.queueHost.restore(messages: mine, bindings: myBindings)
                loop.roomHost.restore(myRooms)
            }
        }
        messages = []  // the loops' shares are theirs alone now (no copy-on-write of a shared buffer)
        for future in restored { try await future.get() }
        // Dead letters and dispatches posted during the restore reach their loops before this returns.
        for loop in self.loops { try await loop.eventLoop.submit {}.get() }
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
