import NIOCore
import StarlingBroker

/// The admin API's operations: each runs on the loops that hold what it needs (one hop per loop, or to the queue's
/// owning loop) and answers on the requesting loop.
extension StarlingServer: AdminOperations {
    func publish(
        destination: String, headers: [(String, String)], body: ByteBuffer, on eventLoop: any EventLoop
    ) -> EventLoopFuture<AdminPublisher.Outcome> {
        // Called on the request's loop: its publisher is used in place.
        let loop = self.broker.loop(for: eventLoop)
        let publisher = self.perLoop.publisher(on: loop) { loop, transport in self.makeAdminConnection(loop: loop, transport: transport) }
        return publisher.publish(destination: destination, headers: headers, body: body)
    }

    func connections(user: String?, limit: Int, on eventLoop: any EventLoop) -> EventLoopFuture<ConnectionList> {
        self.onEveryLoop(eventLoop) { loop in
            loop.registeredConnections.compactMap { $0 as? STOMPConnection }
                .filter { !$0.isAdminSession && (user == nil || $0.login == user) }
                .map(\.info)
        }.map { lists in
            let all = lists.flatMap { $0 }.sorted { $0.session < $1.session }
            return ConnectionList(total: all.count, connections: Array(all.prefix(limit)))
        }
    }

    func disconnect(session: String, on eventLoop: any EventLoop) -> EventLoopFuture<Bool> {
        self.onEveryLoop(eventLoop) { loop in
            guard let connection = loop.registeredConnections.compactMap({ $0 as? STOMPConnection })
                .first(where: { $0.sessionID == session && !$0.isAdminSession })
            else { return false }
            connection.fail("disconnected by an administrator", receiptID: nil, detail: nil)
            return true
        }.map { $0.contains(true) }
    }

    func queues(on eventLoop: any EventLoop) -> EventLoopFuture<[QueueInfo]> {
        self.onEveryLoop(eventLoop) { loop in
            loop.allQueueStats().map { QueueInfo(name: $0.destination, ready: $0.ready, unacked: $0.unacked, consumers: $0.consumers) }
        }.map { $0.flatMap { $0 }.sorted { $0.name < $1.name } }
    }

    /// One queue, asked of its owning loop only.
    func queue(_ name: String, on eventLoop: any EventLoop) -> EventLoopFuture<QueueInfo?> {
        let owner = self.broker.loops[self.broker.loops[0].queueOwner(name)]
        return owner.eventLoop.submit {
            owner.queueStats(name).map { QueueInfo(name: name, ready: $0.ready, unacked: $0.unacked, consumers: $0.consumers) }
        }.hop(to: eventLoop)
    }

    func purge(queue: String, on eventLoop: any EventLoop) -> EventLoopFuture<Int?> {
        let owner = self.broker.loops[self.broker.loops[0].queueOwner(queue)]
        return owner.eventLoop.submit { owner.purgeQueue(queue) }.hop(to: eventLoop)
    }

    func redrive(deadLetterQueue: String, on eventLoop: any EventLoop) -> EventLoopFuture<Int?> {
        let owner = self.broker.loops[self.broker.loops[0].queueOwner(deadLetterQueue)]
        return owner.eventLoop.submit { owner.redriveQueue(deadLetterQueue) }.hop(to: eventLoop)
    }

    func destinations(on eventLoop: any EventLoop) -> EventLoopFuture<[DestinationInfo]> {
        self.onEveryLoop(eventLoop) { loop in loop.subscribedPatternCounts }.map { counts in
            var total: [String: Int] = [:]
            for loopCounts in counts { total.merge(loopCounts, uniquingKeysWith: +) }
            return total.map { DestinationInfo(pattern: $0.key, subscribers: $0.value) }.sorted { $0.pattern < $1.pattern }
        }
    }

    func rooms(on eventLoop: any EventLoop) -> EventLoopFuture<[RoomInfo]> {
        self.onEveryLoop(eventLoop) { loop in
            loop.roomSummaries().map {
                RoomInfo(
                    name: $0.stream.hasPrefix(RoomName.roomPrefix) ? String($0.stream.dropFirst(RoomName.roomPrefix.count)) : $0.stream,
                    destination: $0.stream, members: $0.members, lastOffset: $0.lastOffset, kept: $0.kept
                )
            }
        }.map { $0.flatMap { $0 }.sorted { $0.destination < $1.destination } }
    }

    func presence(room: String, on eventLoop: any EventLoop) -> EventLoopFuture<[PresenceInfo]?> {
        let stream = room.hasPrefix("/") ? room : RoomName.roomPrefix + room
        let owner = self.broker.loops[self.broker.loops[0].roomOwner(stream)]
        return owner.eventLoop.submit {
            owner.roomMembers(stream)?.map { PresenceInfo(user: $0.user, meta: $0.meta, connections: $0.connections) }
        }.hop(to: eventLoop)
    }

    /// `body` run on every loop (in loop order), the results joined on `eventLoop`.
    private func onEveryLoop<Result: Sendable>(
        _ eventLoop: any EventLoop, _ body: @escaping @Sendable (LoopBroker) -> Result
    ) -> EventLoopFuture<[Result]> {
        let futures = self.broker.loops.map { loop in loop.eventLoop.submit { body(loop) } }
        return EventLoopFuture.whenAllSucceed(futures, on: eventLoop)
    }
}

extension STOMPConnection {
    /// What `GET /api/v1/connections` shows of this connection.
    var info: ConnectionInfo {
        ConnectionInfo(
            session: self.sessionID, transport: self.kind.name, remote: self.transport?.remoteAddress, user: self.login,
            version: self.sessionOpen ? self.version.rawValue : nil, subscriptions: self.machine.subscribedDestinations.count
        )
    }

    /// The admin API's own session (`AdminPublisher`): not a client, never listed or counted.
    var isAdminSession: Bool { self.kind == .internal }
}
