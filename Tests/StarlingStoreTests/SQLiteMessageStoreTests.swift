import Foundation
import NIOConcurrencyHelpers
import NIOCore
import StarlingBroker
import StarlingSTOMP
import Testing
@testable import StarlingStore

@Suite("SQLite message store")
struct SQLiteMessageStoreTests {
    private func directory() -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("starling-store-\(UUID().uuidString)").path
    }

    private func message(_ id: UInt64, queue: String = "/queue/q", body: String = "body", count: Int = 0) -> StoredMessage {
        let message = BrokerMessage(
            destination: queue, messageID: "m-\(id)",
            sendHeaders: [
                "persistent": "true", "x-ünïcode": "välue:with\\escapes", "empty": "", "receipt": "r-\(id)",
            ],
            body: ByteBuffer(string: body), allocator: ByteBufferAllocator()
        )
        return StoredMessage(
            storeID: id, queue: queue, message: message, expiresAt: id % 2 == 0 ? 1_700_000_000_000 : nil, deliveryCount: count
        )
    }

    /// Submits and waits for the completion.
    private func apply(_ store: SQLiteMessageStore, _ operations: [StoreOperation]) throws {
        let done = ConditionLock(value: 0)
        let result = NIOLockedValueBox<StoreError?>(nil)
        store.submit(operations) { error in
            result.withLockedValue { $0 = error }
            done.lock()
            done.unlock(withValue: 1)
        }
        done.lock(whenValue: 1)
        done.unlock()
        if let error = result.withLockedValue({ $0 }) { throw error }
    }

    private func keptMessage(_ stream: String, _ offset: UInt64, epoch: String = "e1") -> KeptMessage {
        let message = BrokerMessage(
            destination: stream, messageID: "m-\(offset)", sendHeaders: ["x-custom": "v:1"], body: ByteBuffer(string: "hi \(offset)"),
            allocator: ByteBufferAllocator(),
            serverHeaders: [("x-offset", "\(offset)"), ("x-epoch", epoch), ("user-name", "alice")], offset: offset
        )
        return KeptMessage(stream: stream, epoch: epoch, keptAt: 1_000 + Int64(offset), message: message)
    }

    @Test("Kept messages of rooms and topics survive reopening, trimmed, by stream and offset, with the server's headers intact")
    func keptMessages() throws {
        let directory = self.directory()
        let kept = (1...5).map { self.keptMessage("/room/lobby", $0) }
        do {
            let store = try SQLiteMessageStore(directory: directory)
            store.start()
            try self.apply(store, kept.map { .keepMessage($0) } + [.keepMessage(self.keptMessage("/topic/b", 1))])
            try self.apply(store, [.trimStream(stream: "/room/lobby", through: 2)])
            store.close()
        }
        let recovered = try SQLiteMessageStore(directory: directory).recover().keptMessages
        #expect(recovered == Array(kept[2...]) + [self.keptMessage("/topic/b", 1)])
        #expect(recovered[2].message.headers["user-name"] == "alice")
        #expect(recovered[2].message.shared == kept.last?.message.shared)
    }

    @Test("Inserts, deletes, delivery counts and bindings survive closing and reopening, in store-id order")
    func roundTrip() throws {
        let directory = self.directory()
        do {
            let store = try SQLiteMessageStore(directory: directory)
            #expect(try store.recover().messages.isEmpty)
            store.start()
            try self.apply(store, [.insert(self.message(3)), .insert(self.message(1)), .insert(self.message(2, queue: "/queue/other"))])
            try self.apply(store, [.delete(storeID: 3), .setDeliveryCount(storeID: 1, count: 4)])
            try self.apply(store, [
                .saveBinding(queue: "/queue/durable.1.c.s", pattern: "/topic/news.#"),
                .insert(self.message(7, queue: "/queue/durable.1.c.s")),
                .saveBinding(queue: "/queue/durable.1.c.gone", pattern: "/topic/x"),
                .insert(self.message(8, queue: "/queue/durable.1.c.gone")),
                .deleteBinding(queue: "/queue/durable.1.c.gone"), .delete(storeID: 8),
            ])
            store.close()
        }
        let reopened = try SQLiteMessageStore(directory: directory)
        let contents = try reopened.recover()
        #expect(contents.messages.map(\.storeID) == [1, 2, 7])
        #expect(contents.messages[0] == self.message(1, count: 4))
        #expect(contents.messages[1] == self.message(2, queue: "/queue/other"))
        #expect(contents.messages[1].message.shared == self.message(2, queue: "/queue/other").message.shared)
        #expect(contents.bindings.map(\.queue) == ["/queue/durable.1.c.s"])
        #expect(contents.bindings.first?.pattern == "/topic/news.#")
        #expect(contents.nextStoreID == 8)
        reopened.close()
    }

    @Test("A store read in id ranges on several threads recovers exactly what one thread reads, in order")
    func parallelRecovery() throws {
        let directory = self.directory()
        do {
            let store = try SQLiteMessageStore(directory: directory)
            _ = try store.recover()
            store.start()
            let queues = ["/queue/a", "/queue/b", "/queue/c"]
            try self.apply(store, (1...1_000).map { .insert(self.message(UInt64($0), queue: queues[$0 % 3], body: "body \($0)")) })
            try self.apply(store, stride(from: 7, through: 1_000, by: 7).map { .delete(storeID: UInt64($0)) })
            try self.apply(store, [.setDeliveryCount(storeID: 500, count: 3), .delete(storeID: 1_000)])
            store.close()
        }
        let reopened = try SQLiteMessageStore(directory: directory)
        let serial = try reopened.recover(parallelAbove: .max)
        let parallel = try reopened.recover(parallelAbove: 10)
        #expect(serial.messages.count == 1_000 - 142 - 1)
        #expect(parallel.messages.map(\.storeID) == serial.messages.map(\.storeID))
        #expect(parallel.messages == serial.messages)
        #expect(parallel.messages.map(\.message.shared) == serial.messages.map(\.message.shared))
        #expect(parallel.messages.first { $0.storeID == 500 }?.deliveryCount == 3)
        #expect(parallel.nextStoreID == 1_000 && serial.nextStoreID == 1_000)
        reopened.close()
    }

    @Test("Id ranges for parallel recovery cover the whole range once, in order")
    func recoveryRanges() {
        #expect(SQLiteMessageStore.split(1...10, into: 4) == [1...3, 4...6, 7...9, 10...10])
        #expect(SQLiteMessageStore.split(5...5, into: 4) == [5...5])
        #expect(SQLiteMessageStore.split(1...8, into: 2) == [1...4, 5...8])
        let ranges = SQLiteMessageStore.split(3...1_000_003, into: 3)
        #expect(ranges.first?.lowerBound == 3 && ranges.last?.upperBound == 1_000_003)
        #expect(zip(ranges, ranges.dropFirst()).allSatisfy { $0.upperBound + 1 == $1.lowerBound })
    }

    @Test("Many small batches are all applied, in order, with their completions")
    func groupCommit() throws {
        let directory = self.directory()
        let store = try SQLiteMessageStore(directory: directory, sync: .off)
        _ = try store.recover()
        store.start()
        let completed = ManagedCounter()
        for id in 1...2_000 {
            store.submit([.insert(self.message(UInt64(id)))]) { error in
                if error == nil { completed.increment() }
            }
        }
        try self.apply(store, [.delete(storeID: 1)])
        #expect(completed.value == 2_000)
        store.close()
        let contents = try SQLiteMessageStore(directory: directory).recover()
        #expect(contents.messages.count == 1_999)
        #expect(contents.messages.first?.storeID == 2)
    }

    @Test("A data directory that is a file, or a database file that is not a store, is a clear error at open")
    func unusable() throws {
        let file = self.directory()
        try Data("x".utf8).write(to: URL(fileURLWithPath: file))
        #expect(throws: StoreError("data directory '\(file)' is a file, not a directory")) {
            try SQLiteMessageStore(directory: file)
        }
        let directory = self.directory()
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let garbage = Data((0..<8192).map { UInt8(truncatingIfNeeded: $0 &* 7) })
        try garbage.write(to: URL(fileURLWithPath: directory + "/starling.db"))
        do {
            _ = try SQLiteMessageStore(directory: directory)
            Issue.record("expected an error for a garbage database file")
        } catch {
            #expect(error.description.contains("starling.db"), "\(error)")
        }
    }

    @Test("After close, submissions fail instead of vanishing")
    func closed() throws {
        let store = try SQLiteMessageStore(directory: self.directory())
        _ = try store.recover()
        store.start()
        store.close()
        let failed = ManagedCounter()
        store.submit([.delete(storeID: 1)]) { error in if error != nil { failed.increment() } }
        #expect(failed.value == 1)
    }

    @Test("Header blobs round-trip, and damaged ones are rejected")
    func headerCoding() {
        let headers: STOMPHeaders = ["a": "1", "ü": "", "": "x:y\n"]
        var bytes: [UInt8] = [9]
        let range = HeaderCoding.encode(headers, into: &bytes)
        #expect(range == 1..<bytes.count)
        #expect(HeaderCoding.decode(Array(bytes[range])) == headers)
        #expect(HeaderCoding.decode([]) == [:])
        #expect(HeaderCoding.decode([5, 0, 0, 0, 65]) == nil)
        #expect(HeaderCoding.decode([1, 0, 0]) == nil)
    }
}

/// A thread-safe counter for completions.
final class ManagedCounter: Sendable {
    private let box = NIOLockedValueBox(0)
    func increment() { self.box.withLockedValue { $0 += 1 } }
    var value: Int { self.box.withLockedValue { $0 } }
}

@Suite("Store batch folding")
struct StoreCoalesceTests {
    private let body = BrokerMessage(
        destination: "/queue/q", messageID: "m", sendHeaders: [:], body: ByteBuffer(bytes: [1]), allocator: ByteBufferAllocator()
    )

    private func message(_ id: UInt64) -> StoredMessage {
        StoredMessage(storeID: id, queue: "/queue/q", message: self.body, expiresAt: nil, deliveryCount: 0)
    }

    @Test("Insert then delete in one batch writes nothing; a count set after the insert goes into it")
    func fold() {
        var counted = self.message(2)
        counted.deliveryCount = 3
        let folded = SQLiteMessageStore.coalesce([
            .insert(self.message(1)), .insert(self.message(2)), .setDeliveryCount(storeID: 2, count: 3),
            .delete(storeID: 1), .delete(storeID: 9), .setDeliveryCount(storeID: 8, count: 2),
        ])
        #expect(folded == [.insert(counted), .delete(storeID: 9), .setDeliveryCount(storeID: 8, count: 2)])
        let binding = SQLiteMessageStore.coalesce([
            .insert(self.message(1)), .deleteBinding(queue: "/queue/q"), .delete(storeID: 1),
        ])
        #expect(binding == [.deleteBinding(queue: "/queue/q")])
    }
}
