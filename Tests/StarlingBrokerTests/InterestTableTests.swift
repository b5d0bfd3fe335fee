import Testing
@testable import StarlingBroker

@Suite("InterestTable")
struct InterestTableTests {
    @Test("Loops are reported for the patterns they subscribed, counted per loop, and the generation moves on change.")
    func masks() {
        let table = InterestTable(loopCount: 3)
        let g0 = table.generation
        table.add(pattern: "/topic/a.*", words: ["a", "*"], loop: 0)
        table.add(pattern: "/topic/#", words: ["#"], loop: 2)
        #expect(table.generation != g0)
        #expect(table.loops(matching: ["a", "b"]).mask == 0b101)
        #expect(table.loops(matching: ["z"]).mask == 0b100)
        table.add(pattern: "/topic/a.*", words: ["a", "*"], loop: 0)
        table.remove(pattern: "/topic/a.*", words: ["a", "*"], loop: 0)
        #expect(table.loops(matching: ["a", "b"]).mask == 0b101)
        table.remove(pattern: "/topic/a.*", words: ["a", "*"], loop: 0)
        #expect(table.loops(matching: ["a", "b"]).mask == 0b100)
        table.remove(pattern: "/topic/#", words: ["#"], loop: 2)
        #expect(table.loops(matching: ["a", "b"]).mask == 0)
        #expect(table.patternCount == 0)
    }
}
