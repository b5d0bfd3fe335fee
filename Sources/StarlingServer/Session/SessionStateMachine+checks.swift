import StarlingBroker
import StarlingSTOMP

/// Checks of header values and destinations the state machine makes before any action (STYLE: one place each).
extension SessionStateMachine {
    /// A rate in updates per second: digits with at most one `.`; 0 (unlimited), or from `DeliveryPolicy.minRateLimit`
    /// to `DeliveryPolicy.maxRateLimit`.
    static func rate(_ text: String) -> Double? {
        guard !text.isEmpty, text.utf8.count <= 16, text.utf8.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) || $0 == UInt8(ascii: ".") }),
              let rate = Double(text), rate.isFinite, rate == 0 || (DeliveryPolicy.minRateLimit...DeliveryPolicy.maxRateLimit).contains(rate)
        else { return nil }
        return rate
    }

    /// What `rate` accepts, for error messages.
    static let rateExpectation = "expected updates per second: 0 (unlimited) or a number from \(DeliveryPolicy.minRateLimit) to \(Int(DeliveryPolicy.maxRateLimit))"

    /// Why `destination` cannot be used, or nil when it can.
    static func destinationProblem(_ destination: String, publishing: Bool) -> String? {
        if destination.hasPrefix(TopicName.prefix) {
            do {
                if publishing {
                    _ = try TopicName.publishWords(destination)
                } else {
                    _ = try TopicName.patternWords(destination)
                }
                return nil
            } catch {
                return error.description
            }
        }
        if destination.hasPrefix(QueueName.prefix) {
            return QueueName.problem(destination).map { "destination '\(destination)': \($0)" }
        }
        if destination.hasPrefix(TempQueueName.prefix) {
            return TempQueueName.problem(destination).map { "destination '\(destination)': \($0)" }
        }
        if destination.hasPrefix(UserDestination.prefix) {
            return UserDestination.problem(destination, publishing: publishing).map { "destination '\(destination)': \($0)" }
        }
        if RoomName.name(of: destination) != nil {
            return RoomName.problem(destination).map { "destination '\(destination)': \($0)" }
        }
        return "unknown destination '\(destination)': destinations start with /topic/, /queue/, /temp-queue/, /user/, /room/ or /presence/"
    }
}
