import CSQLite
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import StarlingBroker
import StarlingSTOMP

/// When the store's writes reach the disk.
public enum StoreSyncPolicy: String, Sendable, CaseIterable {
    /// Every batch is fsynced before its completions run (a persistent SEND's RECEIPT means it is on disk).
    case always
    /// Batches are committed to the write-ahead log without fsync; the log is fsynced every interval. A process
    /// crash loses nothing; a power failure loses at most the last interval.
    case interval
    /// Never fsync: a process crash loses nothing, a power failure may lose anything not yet written back.
    case off
}

/// The embedded store: one SQLite database (WAL journal) in the data directory, written by one thread.
///
/// Group commit: `submit` only appends to a list; the writer thread takes everything submitted so far, applies it
/// in one transaction (one fsync with `always`), then runs the completions. So the number of fsyncs per second is
/// bounded by the disk, not by the message rate.
public final class SQLiteMessageStore: MessageStore, @unchecked Sendable {
    public let path: String
    public let sync: StoreSyncPolicy
    public let syncInterval: TimeInterval

    // The connection is used by `recover` (before `start`) and then only by the writer thread.
    let db: OpaquePointer
    private var statements: Statements!
    /// The writer's scratch for one inserted row (see `apply`).
    private var row: [UInt8] = []
    private struct Pending {
        var batches: [(operations: [StoreOperation], completion: (@Sendable (StoreError?) -> Void)?)] = []
        var closing = false
        var closed = false
    }
    /// Condition value 1 = work to do (or closing), 0 = idle.
    private let condition = ConditionLock(value: 0)
    private var pending = Pending()
    private var writer: Thread?
    private let finished = ConditionLock(value: 0)
    /// Told about each committed transaction (metrics); set before `start`, called on the writer thread.
    public var commitObserver: (any StoreCommitObserver)?
    /// Schema version written to `PRAGMA user_version`.
    static let schemaVersion: Int32 = 1

    /// Opens (creating if needed) `directory/starling.db`. Throws a clear error for a directory that cannot be
    /// used or a database that is not a Starling store or is damaged: never starts empty over unreadable data.
    public init(directory: String, sync: StoreSyncPolicy = .always, syncInterval: TimeInterval = 1) throws(StoreError) {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else { throw StoreError("data directory '\(directory)' is a file, not a directory") }
        } else {
            do {
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            } catch {
                throw StoreError("cannot create data directory '\(directory)': \(error.localizedDescription)")
            }
        }
        self.path = (directory as NSString).appendingPathComponent("starling.db")
        self.sync = sync
        self.syncInterval = syncInterval
        var handle: OpaquePointer?
        let flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX
        guard sqlite3_open_v2(self.path, &handle, flags, nil) == SQLITE_OK, let handle else {
            let message = handle.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
            if let handle { sqlite3_close_v2(handle) }
            throw StoreError("cannot open '\(self.path)': \(message)")
        }
        self.db = handle
        sqlite3_busy_timeout(handle, 5_000)
        do {
            try self.prepareSchema()
            self.statements = try Statements(db: handle)
        } catch {
            sqlite3_close_v2(handle)
            throw error
        }
    }

    deinit {
        self.statements = nil
        sqlite3_close_v2(self.db)
    }

    private func prepareSchema() throws(StoreError) {
        // A file that is not a database fails here ("file is not a database"), before anything is written.
        let check = try self.queryText("PRAGMA quick_check")
        guard check == "ok" else { throw StoreError("'\(self.path)' is damaged (quick_check: \(check ?? "no answer"))") }
        let version = try self.queryInt("PRAGMA user_version") ?? 0
        if version > Int64(Self.schemaVersion) {
            throw StoreError("'\(self.path)' was written by a newer Starling (schema \(version), this one reads \(Self.schemaVersion))")
        }
        let mode = try self.queryText("PRAGMA journal_mode=WAL")
        guard mode?.lowercased() == "wal" else { throw StoreError("'\(self.path)': cannot switch to WAL journaling (got \(mode ?? "nothing"))") }
        let synchronous = switch self.sync {
        case .always: "FULL"
        case .interval: "NORMAL"
        case .off: "OFF"
        }
        try self.execute("PRAGMA synchronous=\(synchronous)")
        try self.execute("""
            CREATE TABLE IF NOT EXISTS messages(
                id INTEGER PRIMARY KEY,
                queue TEXT NOT NULL,
                message_id TEXT NOT NULL,
                destination TEXT NOT NULL,
                headers BLOB NOT NULL,
                body BLOB NOT NULL,
                expires_at INTEGER,
                delivery_count INTEGER NOT NULL DEFAULT 0
            );
            DROP INDEX IF EXISTS messages_by_queue;
            CREATE TABLE IF NOT EXISTS bindings(queue TEXT PRIMARY KEY, pattern TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS kept_messages(
                stream TEXT NOT NULL,
                offset INTEGER NOT NULL,
                epoch TEXT NOT NULL,
                message_id TEXT NOT NULL,
                headers BLOB NOT NULL,
                body BLOB NOT NULL,
                kept_at INTEGER NOT NULL,
                PRIMARY KEY(stream, offset)
            ) WITHOUT ROWID;
            PRAGMA user_version=\(Self.schemaVersion);
            """)
    }

    // MARK: MessageStore

    /// Starts the writer thread (after `recover`).
    public func start() {
        guard self.writer == nil else { return }
        let thread = Thread { [self] in self.run() }
        thread.name = "starling-store"
        self.writer = thread
        thread.start()
    }

    public func submit(_ operations: [StoreOperation], completion: (@Sendable (StoreError?) -> Void)?) {
        self.condition.lock()
        if self.pending.closing {
            self.condition.unlock()
            completion?(StoreError("the store is closed"))
            return
        }
        self.pending.batches.append((operations, completion))
        self.condition.unlock(withValue: 1)
    }

    public func close() {
        self.condition.lock()
        self.pending.closing = true
        let started = self.writer != nil
        self.condition.unlock(withValue: 1)
        guard started else { return }
        self.finished.lock(whenValue: 1)
        self.finished.unlock()
    }

    // MARK: writer

    private func run() {
        var lastSync = Date()
        while true {
            if self.sync == .interval {
                // Wake at least once per interval to sync, work or not.
                if !self.condition.lock(whenValue: 1, timeoutSeconds: self.syncInterval) { self.condition.lock() }
            } else {
                self.condition.lock(whenValue: 1)
            }
            let batches = self.pending.batches
            self.pending.batches.removeAll()
            let closing = self.pending.closing
            self.condition.unlock(withValue: 0)

            if !batches.isEmpty { self.apply(batches) }
            if self.sync == .interval, Date().timeIntervalSince(lastSync) >= self.syncInterval {
                // NORMAL synchronous: the WAL is fsynced when it is checkpointed.
                sqlite3_wal_checkpoint_v2(self.db, nil, SQLITE_CHECKPOINT_PASSIVE, nil, nil)
                lastSync = Date()
            }
            if closing {
                self.condition.lock()
                let more = !self.pending.batches.isEmpty
                self.condition.unlock(withValue: more ? 1 : 0)
                if more { continue }
                sqlite3_wal_checkpoint_v2(self.db, nil, SQLITE_CHECKPOINT_TRUNCATE, nil, nil)
                self.finished.lock()
                self.finished.unlock(withValue: 1)
                return
            }
        }
    }

    /// Applies every batch in one transaction; if it fails, each batch alone, so one bad batch (or a full disk
    /// for some of them) fails only its own completion.
    private func apply(_ batches: [(operations: [StoreOperation], completion: (@Sendable (StoreError?) -> Void)?)]) {
        if let error = self.transaction(batches.flatMap(\.operations)) {
            if batches.count == 1 {
                batches[0].completion?(error)
                return
            }
            for batch in batches { batch.completion?(self.transaction(batch.operations)) }
            return
        }
        for batch in batches { batch.completion?(nil) }
    }

    private func transaction(_ operations: [StoreOperation]) -> StoreError? {
        let operations = Self.coalesce(operations)
        guard !operations.isEmpty else { return nil }
        do {
            try self.execute("BEGIN IMMEDIATE")
        } catch {
            return error
        }
        let began = DispatchTime.now().uptimeNanoseconds
        do {
            for operation in operations { try self.apply(operation) }
            try self.execute("COMMIT")
            self.commitObserver?.storeCommitted(operations: operations.count, nanoseconds: DispatchTime.now().uptimeNanoseconds - began)
            return nil
        } catch {
            try? self.execute("ROLLBACK")
            return error
        }
    }

    /// Folds a batch before writing it, with the same end state: a message inserted and deleted in the same batch
    /// (acknowledged before it reached the disk) is not written at all, and a delivery count set on a message
    /// inserted in the batch goes into the insert. At high rates consumers acknowledge within one group commit, so
    /// most messages then cost no write.
    static func coalesce(_ operations: [StoreOperation]) -> [StoreOperation] {
        var inserted: [UInt64: Int] = [:]
        var result: [StoreOperation?] = []
        result.reserveCapacity(operations.count)
        for operation in operations {
            switch operation {
            case .insert(let message):
                inserted[message.storeID] = result.count
                result.append(operation)
            case .delete(let storeID):
                if let index = inserted.removeValue(forKey: storeID) {
                    result[index] = nil
                } else {
                    result.append(operation)
                }
            case .setDeliveryCount(let storeID, let count):
                if let index = inserted[storeID], case .insert(var message)? = result[index] {
                    message.deliveryCount = count
                    result[index] = .insert(message)
                } else {
                    result.append(operation)
                }
            case .saveBinding, .deleteBinding, .keepMessage, .trimStream:
                result.append(operation)
            }
        }
        return result.compactMap { $0 }
    }

    private func apply(_ operation: StoreOperation) throws(StoreError) {
        let statements = self.statements!
        switch operation {
        case .insert(let stored):
            // The row's text and blob columns go into one reused buffer and are bound without a copy.
            self.row.removeAll(keepingCapacity: true)
            let queue = self.row.appendBytes(of: stored.queue)
            let messageID = self.row.appendBytes(of: stored.message.messageID)
            let destination = self.row.appendBytes(of: stored.message.destination)
            let headers = HeaderCoding.encode(stored.message.storedHeaders, into: &self.row)
            let body = self.row.appendBytes(of: stored.message.body)
            let statement = statements.insert
            statement.bind(1, Int64(bitPattern: stored.storeID))
            if let expiresAt = stored.expiresAt { statement.bind(7, expiresAt) } else { statement.bindNull(7) }
            statement.bind(8, Int64(stored.deliveryCount))
            let result = self.row.withUnsafeBytes { bytes in
                statement.bindText(2, bytes, queue)
                statement.bindText(3, bytes, messageID)
                statement.bindText(4, bytes, destination)
                statement.bindBlob(5, bytes, headers)
                statement.bindBlob(6, bytes, body)
                return Result { () throws(StoreError) in try statement.run() }
            }
            try result.get()
        case .delete(let storeID):
            statements.delete.bind(1, Int64(bitPattern: storeID))
            try statements.delete.run()
        case .setDeliveryCount(let storeID, let count):
            statements.setDeliveryCount.bind(1, Int64(count))
            statements.setDeliveryCount.bind(2, Int64(bitPattern: storeID))
            try statements.setDeliveryCount.run()
        case .saveBinding(let queue, let pattern):
            statements.saveBinding.bind(1, queue)
            statements.saveBinding.bind(2, pattern)
            try statements.saveBinding.run()
        case .deleteBinding(let queue):
            statements.deleteBinding.bind(1, queue)
            try statements.deleteBinding.run()
        case .keepMessage(let stored):
            self.row.removeAll(keepingCapacity: true)
            let messageID = self.row.appendBytes(of: stored.message.messageID)
            let headers = HeaderCoding.encode(stored.message.storedHeaders, into: &self.row)
            let body = self.row.appendBytes(of: stored.message.body)
            let statement = statements.keepMessage
            statement.bind(1, stored.stream)
            statement.bind(2, Int64(bitPattern: stored.message.offset))
            statement.bind(3, stored.epoch)
            statement.bind(7, stored.keptAt)
            let result = self.row.withUnsafeBytes { bytes in
                statement.bindText(4, bytes, messageID)
                statement.bindBlob(5, bytes, headers)
                statement.bindBlob(6, bytes, body)
                return Result { () throws(StoreError) in try statement.run() }
            }
            try result.get()
        case .trimStream(let stream, let offset):
            statements.trimStream.bind(1, stream)
            statements.trimStream.bind(2, Int64(bitPattern: offset))
            try statements.trimStream.run()
        }
    }

    // MARK: SQL helpers

    private func execute(_ sql: String) throws(StoreError) {
        var message: UnsafeMutablePointer<CChar>?
        let result = sqlite3_exec(self.db, sql, nil, nil, &message)
        guard result == SQLITE_OK else {
            let text = message.map { String(cString: $0) } ?? String(cString: sqlite3_errstr(result))
            sqlite3_free(message)
            throw StoreError.sqlite(result, text, path: self.path)
        }
    }

    private func queryText(_ sql: String) throws(StoreError) -> String? {
        let statement = try Statement(db: self.db, sql: sql)
        return try statement.step() ? statement.text(0) : nil
    }

    private func queryInt(_ sql: String) throws(StoreError) -> Int64? {
        let statement = try Statement(db: self.db, sql: sql)
        return try statement.step() ? statement.int(0) : nil
    }
}

/// Gets the size and duration (statements, commit and fsync) of each group commit of a `SQLiteMessageStore`.
public protocol StoreCommitObserver: AnyObject, Sendable {
    func storeCommitted(operations: Int, nanoseconds: UInt64)
}
