import Testing
@testable import StarlingLoadtestKit

@Suite("PacingHeap")
struct PacingHeapTests {
    @Test("Elements come out in order of due time, and only once due")
    func order() {
        var heap = PacingHeap<Int>()
        let dues: [UInt64] = [50, 10, 40, 10, 30, 20, 60, 0]
        for (index, due) in dues.enumerated() { heap.insert(index, due: due) }
        #expect(heap.popDue(now: 5) == 7)
        #expect(heap.popDue(now: 5) == nil)
        var popped: [UInt64] = []
        while let next = heap.popDue(now: 45) { popped.append(dues[next]) }
        #expect(popped == [10, 10, 20, 30, 40])
        #expect(heap.count == 2)
        heap.insert(8, due: 1)
        #expect(heap.popDue(now: 100) == 8)
        #expect(heap.popDue(now: 100).map { dues[$0] } == 50)
        #expect(heap.popDue(now: 100).map { dues[$0] } == 60)
        #expect(heap.isEmpty)
    }
}
