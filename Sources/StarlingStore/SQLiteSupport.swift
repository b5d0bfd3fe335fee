import CSQLite
import Foundation
import NIOCore
import StarlingBroker
import StarlingSTOMP

// SQLite plumbing of the store: error mapping, prepared statements, and the header blob format.

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
    let keepMessage: Statement
    let trimStream: Statement

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
        // OR REPLACE: a room forgotten and started again (a new epoch) reuses offsets; its old rows were trimmed,
        // but a leftover must not fail the whole batch (queue messages share it).
        self.keepMessage = try Statement(db: db, sql: """
            INSERT OR REPLACE INTO kept_messages(stream, offset, epoch, message_id, headers, body, kept_at)
            VALUES (?, ?, ?, ?, ?, ?, ?)
            """)
        self.trimStream = try Statement(db: db, sql: "DELETE FROM kept_messages WHERE stream = ? AND offset <= ?")
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
