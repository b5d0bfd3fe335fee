import StarlingBroker
import StarlingSTOMP

/// The room headers of SUBSCRIBE and SEND (docs/rooms.md): `x-presence-*`, `x-history`, `x-resume-from`,
/// `x-presence-mode`, checked before anything reaches a room.
extension SessionStateMachine {
    /// The room options of a room or presence SUBSCRIBE's headers.
    static func roomOptions(_ headers: STOMPHeaders, presence: Bool, maxMetaBytes: Int = .max) -> Result<RoomOptions, SettingProblem> {
        var options = RoomOptions()
        if presence {
            if let mode = headers["x-presence-mode"] {
                guard mode == "count" || mode == "members" else {
                    return .failure(SettingProblem("invalid x-presence-mode '\(mode)': expected members or count"))
                }
                options.countOnly = mode == "count"
            }
            return .success(options)
        }
        options.meta = Dictionary(Self.presenceMeta(headers), uniquingKeysWith: { first, _ in first })
        if let problem = Self.presenceMetaProblem(options.meta, limit: maxMetaBytes) { return .failure(problem) }
        if let value = headers["x-history"] {
            guard let count = Int(value), count >= 0 else {
                return .failure(SettingProblem("invalid x-history '\(value)': expected a non-negative number of messages"))
            }
            options.history = count
        }
        if let value = headers["x-resume-from"] {
            let parts = value.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count == 2, !parts[0].isEmpty, let offset = UInt64(parts[1]) else {
                return .failure(SettingProblem("invalid x-resume-from '\(value)': expected <epoch>:<offset> from the last MESSAGE seen"))
            }
            options.resumeEpoch = String(parts[0])
            options.resumeOffset = offset
        }
        return .success(options)
    }

    /// The `x-presence-<key>:<value>` headers as (key, value), in order, the first of a repeated key only.
    static func presenceMeta(_ headers: STOMPHeaders) -> [(key: String, value: String)] {
        var meta: [(key: String, value: String)] = []
        for (name, value) in headers where name.hasPrefix("x-presence-") && name.utf8.count > 11 {
            let key = String(name.dropFirst(11))
            if !meta.contains(where: { $0.key == key }) { meta.append((key, value)) }
        }
        return meta
    }

    /// Metadata larger than the limit (counted as keys plus values, as the room counts it).
    static func presenceMetaProblem(_ meta: [String: String], limit: Int) -> SettingProblem? {
        let size = RoomLimits.size(of: meta)
        guard size > limit else { return nil }
        return SettingProblem("presence metadata (x-presence-* headers) of \(size) bytes exceeds the limit of \(limit) (presence-max-meta-bytes)")
    }

    struct SettingProblem: Error, Equatable, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }
}
