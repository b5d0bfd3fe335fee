import CSQLite
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import StarlingBroker

extension SQLiteMessageStore {
    /// Below this many stored messages recovery reads on one thread.
    static let parallelRecoveryThreshold = 100_000

    /// Everything the store holds, in store order (ascending id, so each queue's messages come in their order).
    ///
    /// A large store is read in id ranges on several threads, each with its own read-only connection (WAL lets
    /// readers run side by side): decoding a message into a `BrokerMessage`, and the memory that takes, is most
    /// of the time. The ranges are joined in order.
    public func recover() throws(StoreError) -> StoreContents {
        try self.recover(parallelAbove: Self.parallelRecoveryThreshold)
    }

    /// `recover`, reading on several threads when the store holds at least `threshold` messages.
    func recover(parallelAbove threshold: Int) throws(StoreError) -> StoreContents {
        var contents = StoreContents()
        let bindings = try Statement(db: self.db, sql: "SELECT queue, pattern FROM bindings ORDER BY queue")
        while try bindings.step() {
            contents.bindings.append((bindings.text(0), bindings.text(1)))
        }
        contents.keptMessages = try self.readKeptMessages()
        let extent = try Statement(db: self.db, sql: "SELECT count(*), min(id), max(id) FROM messages")
        guard try extent.step(), extent.int(0) > 0 else { return contents }
        let (count, lowest, highest) = (Int(extent.int(0)), extent.int(1), extent.int(2))
        contents.nextStoreID = UInt64(highest) + 1

        let parts = count >= threshold ? min(max(ProcessInfo.processInfo.activeProcessorCount, 2), 4) : 1
        guard parts > 1 else {
            contents.messages = try self.readMessages(db: self.db, ids: lowest...highest)
            return contents
        }
        let ranges = Self.split(lowest...highest, into: parts)
        let results = NIOLockedValueBox([Result<[StoredMessage], StoreError>?](repeating: nil, count: parts))
        DispatchQueue.concurrentPerform(iterations: parts) { part in
            let result = Result<[StoredMessage], StoreError> { () throws(StoreError) in
                try self.withReadOnlyConnection { db throws(StoreError) in try self.readMessages(db: db, ids: ranges[part]) }
            }
            results.withLockedValue { $0[part] = result }
        }
        var messages: [StoredMessage] = []
        messages.reserveCapacity(count)
        for result in results.withLockedValue({ $0 }) {
            switch result {
            case .some(.success(let part)): messages.append(contentsOf: part)
            case .some(.failure(let error)): throw error
            case .none: throw StoreError("'\(self.path)': a recovery thread did not finish")
            }
        }
        contents.messages = messages
        return contents
    }

    /// `range` cut into `parts` consecutive ranges of about equal width.
    static func split(_ range: ClosedRange<Int64>, into parts: Int) -> [ClosedRange<Int64>] {
        let width = (range.upperBound - range.lowerBound) / Int64(parts) + 1
        return (0..<Int64(parts)).compactMap { part in
            let low = range.lowerBound + part * width
            guard low <= range.upperBound else { return nil }
            return low...min(range.upperBound, low + width - 1)
        }
    }

    private func withReadOnlyConnection<T>(_ body: (OpaquePointer) throws(StoreError) -> T) throws(StoreError) -> T {
        var handle: OpaquePointer?
        guard sqlite3_open_v2(self.path, &handle, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, nil) == SQLITE_OK, let handle else {
            let message = handle.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
            if let handle { sqlite3_close_v2(handle) }
            throw StoreError("cannot open '\(self.path)' to recover it: \(message)")
        }
        defer { sqlite3_close_v2(handle) }
        sqlite3_busy_timeout(handle, 5_000)
        return try body(handle)
    }

    /// What rooms and topics keep for history, by stream and offset. Only a stream's newest epoch counts (rows of
    /// an older one would be leftovers of a room that was forgotten).
    private func readKeptMessages() throws(StoreError) -> [KeptMessage] {
        let statement = try Statement(
            db: self.db,
            sql: """
                SELECT stream, offset, epoch, message_id, headers, body, kept_at FROM kept_messages
                WHERE epoch = (SELECT epoch FROM kept_messages AS newest WHERE newest.stream = kept_messages.stream
                               ORDER BY newest.offset DESC LIMIT 1)
                ORDER BY stream, offset
                """
        )
        var messages: [KeptMessage] = []
        let allocator = ByteBufferAllocator()
        while try statement.step() {
            let stream = statement.text(0)
            guard let headers = HeaderCoding.decode(statement.blob(4)) else {
                throw StoreError("'\(self.path)': a kept message of '\(stream)' has damaged headers")
            }
            let message = BrokerMessage(
                destination: stream, messageID: statement.text(3), sendHeaders: [:],
                body: statement.buffer(5, allocator: allocator), allocator: allocator, serverHeaders: Array(headers),
                offset: UInt64(bitPattern: statement.int(1))
            )
            messages.append(KeptMessage(stream: stream, epoch: statement.text(2), keptAt: statement.int(6), message: message))
        }
        return messages
    }

    /// The stored messages with ids in `ids`, in id order.
    private func readMessages(db: OpaquePointer, ids: ClosedRange<Int64>) throws(StoreError) -> [StoredMessage] {
        let statement = try Statement(
            db: db,
            sql: """
                SELECT id, queue, message_id, destination, headers, body, expires_at, delivery_count
                FROM messages WHERE id BETWEEN ?1 AND ?2 ORDER BY id
                """
        )
        statement.bind(1, ids.lowerBound)
        statement.bind(2, ids.upperBound)
        var messages: [StoredMessage] = []
        let allocator = ByteBufferAllocator()
        while try statement.step() {
            let id = UInt64(statement.int(0))
            guard let headers = HeaderCoding.decode(statement.blob(4)) else {
                throw StoreError("'\(self.path)': message \(id) has damaged headers")
            }
            // The stored headers go in as they were (`serverHeaders`): as `sendHeaders` the server's own, such as
            // `user-name`, would be dropped like a client's.
            let message = BrokerMessage(
                destination: statement.text(3), messageID: statement.text(2), sendHeaders: [:],
                body: statement.buffer(5, allocator: allocator), allocator: allocator, serverHeaders: Array(headers)
            )
            messages.append(StoredMessage(
                storeID: id, queue: statement.text(1), message: message,
                expiresAt: statement.isNull(6) ? nil : statement.int(6), deliveryCount: Int(statement.int(7))
            ))
        }
        return messages
    }
}
