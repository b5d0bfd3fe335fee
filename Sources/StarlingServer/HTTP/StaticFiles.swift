import Foundation
import NIOCore

/// The web client, read once at start from the web root (small files; served from memory).
struct StaticFiles: Sendable {
    struct File: Sendable {
        var contentType: String
        var bytes: ByteBuffer
    }

    private var files: [String: File] = [:]

    init(root: String?) {
        guard let root else { return }
        let rootURL = URL(fileURLWithPath: root, isDirectory: true).standardizedFileURL
        guard let enumerator = FileManager.default.enumerator(at: rootURL, includingPropertiesForKeys: [.isRegularFileKey]) else { return }
        for case let url as URL in enumerator {
            guard (try? url.resourceValues(forKeys: [.isRegularFileKey]).isRegularFile) == true,
                  let data = try? Data(contentsOf: url)
            else { continue }
            let relative = String(url.standardizedFileURL.path.dropFirst(rootURL.path.count))
            let path = relative.hasPrefix("/") ? relative : "/" + relative
            self.files[path] = File(contentType: Self.contentType(url.pathExtension), bytes: ByteBuffer(bytes: data))
        }
    }

    var isEmpty: Bool { self.files.isEmpty }

    func file(for path: String) -> File? {
        if path.hasSuffix("/") { return self.files[path + "index.html"] }
        return self.files[path] ?? self.files[path + "/index.html"]
    }

    static func contentType(_ pathExtension: String) -> String {
        switch pathExtension.lowercased() {
        case "html", "htm": "text/html; charset=utf-8"
        case "js", "mjs": "text/javascript; charset=utf-8"
        case "css": "text/css; charset=utf-8"
        case "json": "application/json"
        case "svg": "image/svg+xml"
        case "png": "image/png"
        case "ico": "image/x-icon"
        case "txt", "md": "text/plain; charset=utf-8"
        default: "application/octet-stream"
        }
    }

    /// The first existing `web-client` directory: next to the working directory, or of the package the binary
    /// was built in (`.build/<config>/starling` -> `../../web-client`).
    static func defaultRoot() -> String? {
        var candidates = [FileManager.default.currentDirectoryPath + "/web-client"]
        let executable = URL(fileURLWithPath: CommandLine.arguments.first ?? "").resolvingSymlinksInPath()
        var directory = executable.deletingLastPathComponent()
        for _ in 0..<4 {
            candidates.append(directory.appendingPathComponent("web-client").path)
            directory = directory.deletingLastPathComponent()
        }
        return candidates.first { FileManager.default.fileExists(atPath: $0 + "/index.html") }
    }
}
