/// Counts one loop's broker keeps for metrics. Touched only on the loop; the server reads them there.
public struct LoopStatistics: Sendable {
    /// MESSAGE frames written to topic subscribers (`/user/` destinations included).
    public var topicDeliveries = 0
    /// MESSAGE frames written to room subscribers and to subscribers of topics that keep history.
    public var streamDeliveries = 0
}

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
