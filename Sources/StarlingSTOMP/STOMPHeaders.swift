/// The ordered header list of a STOMP frame.
///
/// Repeated names are kept in order and lookups return the first occurrence (STOMP 1.2 "Repeated Header Entries":
/// "only the first header entry SHOULD be used as the value of header entry"). Names are case-sensitive.
/// Frames carry a handful of headers, so a linear scan beats hashing here.
public struct STOMPHeaders: Sendable, Equatable, Sequence, ExpressibleByDictionaryLiteral {
    public typealias Element = (name: String, value: String)

    private var entries: [Element]

    public init() {
        self.entries = []
    }

    public init(_ pairs: [(name: String, value: String)]) {
        self.entries = pairs
    }

    public init(dictionaryLiteral elements: (String, String)...) {
        self.entries = elements.map { (name: $0.0, value: $0.1) }
    }

    /// The value of the first header named `name`, or nil.
    public subscript(_ name: String) -> String? {
        for entry in self.entries where Self.same(entry.name, name) {
            return entry.value
        }
        return nil
    }

    /// Appends a header, keeping any earlier one with the same name.
    public mutating func add(_ name: String, _ value: String) {
        self.entries.append((name: name, value: value))
    }

    /// Replaces the first header named `name` and drops later ones, or appends it when absent.
    public mutating func replaceOrAdd(_ name: String, _ value: String) {
        guard let first = self.entries.firstIndex(where: { $0.name == name }) else {
            self.entries.append((name: name, value: value))
            return
        }
        self.entries[first].value = value
        var index = first + 1
        while index < self.entries.count {
            if self.entries[index].name == name {
                self.entries.remove(at: index)
            } else {
                index += 1
            }
        }
    }

    /// Removes every header named `name`.
    public mutating func remove(_ name: String) {
        self.entries.removeAll { $0.name == name }
    }

    public func contains(_ name: String) -> Bool {
        self.entries.contains { Self.same($0.name, name) }
    }

    /// Name equality with the length compared first: most names in a scan differ, and most differ in length,
    /// which is cheaper to see than the full string comparison (a call into the runtime for unequal strings).
    @inline(__always)
    private static func same(_ lhs: String, _ rhs: String) -> Bool {
        lhs.utf8.count == rhs.utf8.count && lhs == rhs
    }

    public var count: Int { self.entries.count }

    public var isEmpty: Bool { self.entries.isEmpty }

    public var underestimatedCount: Int { self.entries.count }

    public func makeIterator() -> IndexingIterator<[Element]> {
        self.entries.makeIterator()
    }

    public mutating func reserveCapacity(_ capacity: Int) {
        self.entries.reserveCapacity(capacity)
    }

    public static func == (lhs: STOMPHeaders, rhs: STOMPHeaders) -> Bool {
        lhs.entries.elementsEqual(rhs.entries) { $0.name == $1.name && $0.value == $1.value }
    }
}

extension STOMPHeaders: CustomStringConvertible {
    public var description: String {
        "[" + self.entries.map { "\($0.name): \($0.value)" }.joined(separator: ", ") + "]"
    }
}
