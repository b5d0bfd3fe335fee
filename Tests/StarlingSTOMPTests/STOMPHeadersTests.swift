import Testing

@testable import StarlingSTOMP

@Suite("STOMPHeaders")
struct STOMPHeadersTests {
    @Test("Lookup returns the first of repeated headers and iteration keeps insertion order")
    func firstWins() {
        var headers: STOMPHeaders = ["a": "1", "b": "2"]
        headers.add("a", "3")
        #expect(headers["a"] == "1")
        #expect(headers["missing"] == nil)
        #expect(headers.map(\.name) == ["a", "b", "a"])
        #expect(headers.map(\.value) == ["1", "2", "3"])
        #expect(headers.count == 3)
    }

    @Test("replaceOrAdd replaces the first occurrence and drops later ones, or appends")
    func replaceOrAdd() {
        var headers = STOMPHeaders([(name: "a", value: "1"), (name: "b", value: "2"), (name: "a", value: "3")])
        headers.replaceOrAdd("a", "9")
        #expect(headers == ["a": "9", "b": "2"])
        headers.replaceOrAdd("c", "4")
        #expect(headers == ["a": "9", "b": "2", "c": "4"])
    }

    @Test("remove drops every occurrence and contains, count and isEmpty follow")
    func removeAll() {
        var headers: STOMPHeaders = ["a": "1", "b": "2", "a": "3"]
        #expect(headers.contains("a"))
        headers.remove("a")
        #expect(!headers.contains("a"))
        #expect(headers.count == 1)
        headers.remove("b")
        #expect(headers.isEmpty)
        #expect(headers == STOMPHeaders())
    }

    @Test("Equality compares names and values in order, and names are case-sensitive")
    func equality() {
        let ab: STOMPHeaders = ["a": "1", "b": "2"]
        let lower: STOMPHeaders = ["a": "1"]
        #expect(ab != ["b": "2", "a": "1"])
        #expect(lower != ["A": "1"])
        #expect(lower["A"] == nil)
    }
}
