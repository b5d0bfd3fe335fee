import Foundation
import Logging
import StarlingBroker

/// Logs one line per event to stderr: logfmt (`ts=... level=info msg=listening http=127.0.0.1:8080 ...`), or one JSON
/// object (`{"ts":"...","level":"info","msg":"listening","http":"127.0.0.1:8080"}`) for log pipelines that want it.
public struct LogfmtHandler: LogHandler {
    public enum Format: String, Sendable {
        case logfmt
        case json
    }

    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .info
    private let label: String
    private let format: Format

    public init(label: String, format: Format = .logfmt) {
        self.label = label
        self.format = format
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { self.metadata[key] }
        set { self.metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = self.metadata
        if let metadata = event.metadata { merged.merge(metadata) { $1 } }
        if let error = event.error { merged["error"] = "\(error)" }
        if self.format == .json {
            var line = "{\"ts\":\(JSON.string(Self.timestamp())),\"level\":\"\(event.level)\",\"msg\":\(JSON.string(event.message.description))"
            for key in merged.keys.sorted() where !["ts", "level", "msg"].contains(key) {
                line += ",\(JSON.string(key)):\(JSON.string(merged[key]!.description))"
            }
            line += "}\n"
            FileHandle.standardError.write(Data(line.utf8))
            return
        }
        var line = "ts=\(Self.timestamp()) level=\(event.level) msg=\(Self.quote(event.message.description))"
        for key in merged.keys.sorted() {
            line += " \(key)=\(Self.quote(merged[key]!.description))"
        }
        line += "\n"
        FileHandle.standardError.write(line.data(using: .utf8)!)
    }

    private static func quote(_ value: String) -> String {
        if !value.isEmpty, !value.contains(where: { $0 == " " || $0 == "\"" || $0 == "=" || $0.isNewline }) { return value }
        let escaped = value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            .replacingOccurrences(of: "\n", with: "\\n")
        return "\"\(escaped)\""
    }

    private static func timestamp() -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.string(from: Date())
    }
}
