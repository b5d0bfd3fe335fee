/// Where a loop reports how long its deliveries took: from publish to the end of the delivering loop's flush, once
/// per delivered batch (for its oldest message). Called on the loop.
public protocol DeliveryLatencyRecorder: AnyObject, Sendable {
    func recordDeliveryLatency(nanoseconds: UInt64)
}

/// One queue's counts, as its owning loop sees them.
public struct QueueStatistics: Sendable {
    public var destination: String
    public var ready: Int
    public var unacked: Int
    public var consumers: Int
}

/// A room (or topic with history) as its owning loop sees it.
public struct RoomSummary: Sendable {
    public var stream: String
    public var members: Int
    /// The offset of its newest message (0: none yet).
    public var lastOffset: UInt64
    /// Messages kept for history and resume.
    public var kept: Int
}

/// One user present in a room.
public struct RoomMember: Sendable {
    public var user: String
    /// The metadata of the user's most recent join or update (`x-presence-*`).
    public var meta: [String: String]
    /// The user's connections (sessions and subscriptions) in the room.
    public var connections: Int
}
