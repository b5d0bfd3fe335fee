/// Paced publishers of one loop ordered by when their next message is due (a binary min-heap), so the 1 ms pacing
/// timer touches only the publishers that are due instead of every publisher every millisecond (with 2,000 room
/// members that scan cost more CPU than the messages).
struct PacingHeap<Element> {
    private var entries: [(due: UInt64, element: Element)] = []

    var isEmpty: Bool { self.entries.isEmpty }
    var count: Int { self.entries.count }

    mutating func insert(_ element: Element, due: UInt64) {
        self.entries.append((due, element))
        var child = self.entries.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard self.entries[child].due < self.entries[parent].due else { break }
            self.entries.swapAt(child, parent)
            child = parent
        }
    }

    /// Removes and returns the element due first, if it is due by `now`.
    mutating func popDue(now: UInt64) -> Element? {
        guard let first = self.entries.first, first.due <= now else { return nil }
        let last = self.entries.removeLast()
        if !self.entries.isEmpty {
            self.entries[0] = last
            var parent = 0
            while true {
                let left = 2 * parent + 1
                let right = left + 1
                var smallest = parent
                if left < self.entries.count, self.entries[left].due < self.entries[smallest].due { smallest = left }
                if right < self.entries.count, self.entries[right].due < self.entries[smallest].due { smallest = right }
                if smallest == parent { break }
                self.entries.swapAt(parent, smallest)
                parent = smallest
            }
        }
        return first.element
    }
}
