import NIOCore

/// One repeating task per event loop that drives every connection's timers: CONNECT timeout, outgoing
/// heart-beats and the silent-client check (STOMP 1.2 "Heart-beating").
///
/// Three scheduled tasks per connection cost about 600 bytes each idle connection, and a task allocation on
/// every tick; one clock per loop costs a pass over the loop's timed connections every `tick`. The tick bounds
/// the timers' precision (a heart-beat may be up to one tick late), so it is kept well below the shortest
/// heart-beat interval the server accepts.
///
/// Event-loop-bound: used only on its loop.
final class ConnectionClock {
    /// A connection with at least one timer running.
    protocol Member: AnyObject {
        /// Called every tick; returns false when the connection no longer needs the clock.
        func clockTick(now: NIODeadline) -> Bool
    }

    private let eventLoop: any EventLoop
    private let tick: TimeAmount
    private var members: [ObjectIdentifier: any Member] = [:]
    private var task: RepeatedTask?

    init(eventLoop: any EventLoop, tick: TimeAmount = .milliseconds(50)) {
        self.eventLoop = eventLoop
        self.tick = tick
    }

    func add(_ member: any Member) {
        self.members[ObjectIdentifier(member)] = member
        guard self.task == nil else { return }
        let loopBound = NIOLoopBound(self, eventLoop: self.eventLoop)
        self.task = self.eventLoop.scheduleRepeatedTask(initialDelay: self.tick, delay: self.tick) { _ in
            loopBound.value.fire()
        }
    }

    func remove(_ member: any Member) {
        self.members[ObjectIdentifier(member)] = nil
    }

    var count: Int { self.members.count }

    private func fire() {
        let now = NIODeadline.now()
        for (key, member) in self.members where !member.clockTick(now: now) {
            self.members[key] = nil
        }
        if self.members.isEmpty {
            self.task?.cancel()
            self.task = nil
        }
    }
}
