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
        do {
            for operation in operations { try self.apply(operation) }
            try self.execute("COMMIT")
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
            case .saveBinding, .deleteBinding:
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
            let headers = HeaderCoding.encode(stored.headers, into: &self.row)
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

extension StoreError {
    static func sqlite(_ code: Int32, _ message: String, path: String) -> StoreError {
        switch code & 0xFF {
        case SQLITE_FULL: StoreError("disk full: cannot write '\(path)' (\(message))")
        case SQLITE_NOTADB, SQLITE_CORRUPT: StoreError("'\(path)' is not a readable Starling store (\(message))")
        default: StoreError("'\(path)': \(message)")
        }
    }
}

/// The prepared statements of the writer.
final class Statements {
    let insert: Statement
    let delete: Statement
    let setDeliveryCount: Statement
    let saveBinding: Statement
    let deleteBinding: Statement

    init(db: OpaquePointer) throws(StoreError) {
        // A plain INSERT: store ids are never reused. `OR REPLACE` would make every insert a possible multi-row
        // change, which SQLite guards with a statement journal (a 64 KiB buffer and a copy of each page touched).
        self.insert = try Statement(db: db, sql: """
            INSERT INTO messages(id, queue, message_id, destination, headers, body, expires_at, delivery_count)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?)
            """)
        self.delete = try Statement(db: db, sql: "DELETE FROM messages WHERE id = ?")
        self.setDeliveryCount = try Statement(db: db, sql: "UPDATE messages SET delivery_count = ? WHERE id = ?")
        self.saveBinding = try Statement(db: db, sql: "INSERT OR REPLACE INTO bindings(queue, pattern) VALUES (?, ?)")
        self.deleteBinding = try Statement(db: db, sql: "DELETE FROM bindings WHERE queue = ?")
    }
}

/// One prepared statement (not thread-safe: used by one thread at a time).
final class Statement {
    private let db: OpaquePointer
    private let handle: OpaquePointer
    /// SQLITE_TRANSIENT: SQLite copies bound text and blobs.
    private static let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)
    /// SQLITE_STATIC: SQLite uses the caller's bytes as they are, until the statement is reset or rebound.
    private static let `static` = unsafeBitCast(0, to: sqlite3_destructor_type.self)

    init(db: OpaquePointer, sql: String) throws(StoreError) {
        self.db = db
        var handle: OpaquePointer?
        let result = sqlite3_prepare_v2(db, sql, -1, &handle, nil)
        guard result == SQLITE_OK, let handle else {
            throw StoreError.sqlite(result, String(cString: sqlite3_errmsg(db)), path: String(cString: sqlite3_db_filename(db, "main")))
        }
        self.handle = handle
    }

    deinit { sqlite3_finalize(self.handle) }

    func bind(_ index: Int32, _ value: Int64) { sqlite3_bind_int64(self.handle, index, value) }
    func bindNull(_ index: Int32) { sqlite3_bind_null(self.handle, index) }
    func bind(_ index: Int32, _ value: String) { sqlite3_bind_text(self.handle, index, value, -1, Self.transient) }

    /// Binds `bytes[range]` without a copy (SQLITE_STATIC): `bytes` must stay valid and unchanged until `run`
    /// returned (it resets the statement and clears its bindings).
    func bindText(_ index: Int32, _ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) {
        sqlite3_bind_text(self.handle, index, Self.address(bytes, range), Int32(range.count), Self.static)
    }

    /// As `bindText`, for a blob.
    func bindBlob(_ index: Int32, _ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) {
        sqlite3_bind_blob(self.handle, index, Self.address(bytes, range), Int32(range.count), Self.static)
    }

    /// A zero-length value still needs a non-null pointer to be text or a blob, not NULL.
    private static func address(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> UnsafeRawPointer {
        guard let base = bytes.baseAddress else { return UnsafeRawPointer(bitPattern: 1)! }
        return base + range.lowerBound
    }

    /// Runs a statement that returns no rows, then resets it for the next use.
    func run() throws(StoreError) {
        defer {
            sqlite3_reset(self.handle)
            sqlite3_clear_bindings(self.handle)
        }
        let result = sqlite3_step(self.handle)
        guard result == SQLITE_DONE else {
            throw StoreError.sqlite(result, String(cString: sqlite3_errmsg(self.db)), path: String(cString: sqlite3_db_filename(self.db, "main")))
        }
    }

    /// Steps to the next row: true when there is one.
    func step() throws(StoreError) -> Bool {
        let result = sqlite3_step(self.handle)
        switch result {
        case SQLITE_ROW: return true
        case SQLITE_DONE: return false
        default:
            throw StoreError.sqlite(result, String(cString: sqlite3_errmsg(self.db)), path: String(cString: sqlite3_db_filename(self.db, "main")))
        }
    }

    func int(_ column: Int32) -> Int64 { sqlite3_column_int64(self.handle, column) }
    func isNull(_ column: Int32) -> Bool { sqlite3_column_type(self.handle, column) == SQLITE_NULL }
    func text(_ column: Int32) -> String {
        guard let text = sqlite3_column_text(self.handle, column) else { return "" }
        return String(cString: text)
    }
    func blob(_ column: Int32) -> [UInt8] {
        let count = Int(sqlite3_column_bytes(self.handle, column))
        guard count > 0, let bytes = sqlite3_column_blob(self.handle, column) else { return [] }
        return Array(UnsafeRawBufferPointer(start: bytes, count: count))
    }
    func buffer(_ column: Int32, allocator: ByteBufferAllocator) -> ByteBuffer {
        let count = Int(sqlite3_column_bytes(self.handle, column))
        guard count > 0, let bytes = sqlite3_column_blob(self.handle, column) else { return allocator.buffer(capacity: 0) }
        var buffer = allocator.buffer(capacity: count)
        buffer.writeBytes(UnsafeRawBufferPointer(start: bytes, count: count))
        return buffer
    }
}

extension [UInt8] {
    /// Appends the UTF-8 of `string` and returns where it went.
    mutating func appendBytes(of string: String) -> Range<Int> {
        let start = self.count
        self.append(contentsOf: string.utf8)
        return start..<self.count
    }

    /// Appends the readable bytes of `buffer` and returns where they went.
    mutating func appendBytes(of buffer: ByteBuffer) -> Range<Int> {
        let start = self.count
        buffer.withUnsafeReadableBytes { self.append(contentsOf: $0) }
        return start..<self.count
    }
}

/// Headers as a blob: for each header, a 4-byte little-endian length and the UTF-8 name, then the same for the value.
enum HeaderCoding {
    /// Appends the blob of `headers` to `bytes` and returns where it went.
    static func encode(_ headers: some Sequence<STOMPHeaders.Element>, into bytes: inout [UInt8]) -> Range<Int> {
        let start = bytes.count
        for (name, value) in headers {
            Self.append(name, to: &bytes)
            Self.append(value, to: &bytes)
        }
        return start..<bytes.count
    }

    private static func append(_ part: String, to bytes: inout [UInt8]) {
        let length = UInt32(part.utf8.count)
        bytes.append(UInt8(truncatingIfNeeded: length))
        bytes.append(UInt8(truncatingIfNeeded: length >> 8))
        bytes.append(UInt8(truncatingIfNeeded: length >> 16))
        bytes.append(UInt8(truncatingIfNeeded: length >> 24))
        bytes.append(contentsOf: part.utf8)
    }

    static func decode(_ bytes: [UInt8]) -> STOMPHeaders? {
        var headers = STOMPHeaders()
        var index = 0
        func part() -> String? {
            guard index + 4 <= bytes.count else { return nil }
            let length = Int(UInt32(bytes[index]) | UInt32(bytes[index + 1]) << 8 | UInt32(bytes[index + 2]) << 16 | UInt32(bytes[index + 3]) << 24)
            index += 4
            guard length <= bytes.count - index else { return nil }
            defer { index += length }
            return String(decoding: bytes[index..<index + length], as: UTF8.self)
        }
        while index < bytes.count {
            guard let name = part(), let value = part() else { return nil }
            headers.add(name, value)
        }
        return headers
    }
}
