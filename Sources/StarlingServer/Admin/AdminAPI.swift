import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import StarlingBroker

/// The admin HTTP API under `/api/v1/` (docs/admin-api.md, docs/openapi.yaml): JSON in and out, a bearer token
/// (`[admin] token`) on every request, errors as `{"error": ..., "reason": ...}` with the matching status.
final class AdminAPI: Sendable {
    struct Response: Sendable {
        var status: HTTPResponseStatus
        /// JSON.
        var body: ByteBuffer
        var headers: [(String, String)] = []

        init(status: HTTPResponseStatus, json: some Encodable) {
            self.status = status
            self.body = AdminAPI.encode(json)
        }

        static func error(_ status: HTTPResponseStatus, _ code: String, _ reason: String) -> Response {
            Response(status: status, json: ["error": code, "reason": reason])
        }
    }

    /// What a request carries that the API reads.
    struct Request {
        var method: HTTPMethod
        var path: String
        var query: [String: String]
        var authorization: String?
        var body: ByteBuffer
        /// The body went past `maxBodySize` (and was dropped): answered 413 once the token was checked.
        var bodyTooLarge = false
    }

    /// Methods each path shape answers to (for 405 and its `Allow` header; any other shape is 404).
    private static func allowedMethods(_ route: [String]) -> [HTTPMethod] {
        switch (route.count, route[0]) {
        case (1, "publish"): [.POST]
        case (1, "connections"), (1, "queues"), (1, "destinations"), (1, "rooms"), (2, "queues"), (2, "rooms"): [.GET]
        case (2, "connections"): [.GET, .DELETE]
        case (3, "queues") where route[2] == "messages": [.DELETE]
        case (3, "queues") where route[2] == "redrive": [.POST]
        default: []
        }
    }

    private let token: NIOLockedValueBox<[UInt8]?>
    /// Largest request body (a publish's JSON: the STOMP body limit plus room for headers and escaping).
    let maxBodySize: Int

    init(token: String?, maxBodySize: Int) {
        self.token = NIOLockedValueBox(token.map { Array($0.utf8) })
        self.maxBodySize = maxBodySize
    }

    static let prefix = "/api/"

    /// A configuration reload: the token from now on (nil turns the API off).
    func setToken(_ token: String?) {
        self.token.withLockedValue { $0 = token.map { Array($0.utf8) } }
    }

    func handle(_ request: Request, operations: any AdminOperations, on eventLoop: any EventLoop) -> EventLoopFuture<Response> {
        guard let token = self.token.withLockedValue({ $0 }) else {
            return eventLoop.makeSucceededFuture(.error(.notFound, "disabled", "the admin API is off: set [admin] token in the config file"))
        }
        guard let presented = Self.bearer(request.authorization), Self.constantTimeEqual(Array(presented.utf8), token) else {
            var response = Response.error(.unauthorized, "unauthorized", "an admin token is required: Authorization: Bearer <token>")
            response.headers = [("WWW-Authenticate", "Bearer realm=\"starling-admin\"")]
            return eventLoop.makeSucceededFuture(response)
        }
        let parts = request.path.split(separator: "/", omittingEmptySubsequences: true).map { $0.removingPercentEncoding ?? String($0) }
        guard parts.count >= 3, parts[0] == "api", parts[1] == "v1" else {
            return eventLoop.makeSucceededFuture(.error(.notFound, "not_found", "no such endpoint: \(request.path) (see docs/admin-api.md)"))
        }
        let route = Array(parts.dropFirst(2))
        if request.bodyTooLarge {
            return eventLoop.makeSucceededFuture(.error(.payloadTooLarge, "too_large", "the request body is over \(self.maxBodySize) bytes"))
        }
        let allowed = Self.allowedMethods(route)
        guard allowed.contains(request.method) else {
            guard !allowed.isEmpty else {
                return eventLoop.makeSucceededFuture(.error(.notFound, "not_found", "no such endpoint: \(request.path) (see docs/admin-api.md)"))
            }
            var response = Response.error(
                .methodNotAllowed, "method_not_allowed", "\(request.method.rawValue) is not allowed on \(request.path)"
            )
            response.headers = [("Allow", allowed.map(\.rawValue).joined(separator: ", "))]
            return eventLoop.makeSucceededFuture(response)
        }
        switch (request.method, route.count, route[0]) {
        case (.POST, 1, "publish"):
            return self.publish(request, operations: operations, on: eventLoop)
        case (.GET, 1, "connections"):
            let limit = request.query["limit"].flatMap(Int.init) ?? 1000
            return operations.connections(user: request.query["user"], limit: max(0, limit), on: eventLoop)
                .map { Response(status: .ok, json: $0) }
        case (.GET, 2, "connections"):
            let session = route[1]
            return operations.connections(user: nil, limit: Int.max, on: eventLoop).map { list in
                guard let connection = list.connections.first(where: { $0.session == session }) else {
                    return .error(.notFound, "not_found", "no connection with session id '\(session)'")
                }
                return Response(status: .ok, json: connection)
            }
        case (.DELETE, 2, "connections"):
            return operations.disconnect(session: route[1], on: eventLoop).map { found in
                found ? Response(status: .ok, json: ["disconnected": route[1]])
                    : .error(.notFound, "not_found", "no connection with session id '\(route[1])'")
            }
        case (.GET, 1, "queues"):
            return operations.queues(on: eventLoop).map { Response(status: .ok, json: ["queues": $0]) }
        case (.GET, 2, "queues"):
            let name = Self.queueName(route[1])
            return operations.queue(name, on: eventLoop).map { queue in
                guard let queue else { return .error(.notFound, "not_found", "no queue '\(name)'") }
                return Response(status: .ok, json: queue)
            }
        case (.DELETE, 3, "queues") where route[2] == "messages":
            let name = Self.queueName(route[1])
            return operations.purge(queue: name, on: eventLoop).map { purged in
                guard let purged else { return .error(.notFound, "not_found", "no queue '\(name)'") }
                return Response(status: .ok, json: QueueChange(queue: name, purged: purged))
            }
        case (.POST, 3, "queues") where route[2] == "redrive":
            let name = Self.queueName(route[1])
            return operations.redrive(deadLetterQueue: name, on: eventLoop).map { moved in
                guard let moved else { return .error(.notFound, "not_found", "no queue '\(name)'") }
                return Response(status: .ok, json: QueueChange(queue: name, moved: moved))
            }
        case (.GET, 1, "rooms"):
            return operations.rooms(on: eventLoop).map { Response(status: .ok, json: ["rooms": $0]) }
        case (.GET, 2, "rooms"):
            let name = route[1]
            return operations.presence(room: name, on: eventLoop).map { members in
                guard let members else { return .error(.notFound, "not_found", "no room '\(name)' (a room exists while it has members or history)") }
                return Response(status: .ok, json: RoomPresence(room: name, members: members))
            }
        case (.GET, 1, "destinations"):
            return operations.destinations(on: eventLoop).map { Response(status: .ok, json: ["subscribed": $0]) }
        default:
            return eventLoop.makeSucceededFuture(.error(.notFound, "not_found", "no such endpoint: \(request.path) (see docs/admin-api.md)"))
        }
    }

    /// `{"destination": "/topic/x", "body": "...", "headers": {"k": "v"}}`; `body` is text (UTF-8), or base64 in
    /// `body_base64` for binary; header values are strings, numbers or booleans (`true` is sent as `true`).
    private func publish(_ request: Request, operations: any AdminOperations, on eventLoop: any EventLoop) -> EventLoopFuture<Response> {
        let given: PublishRequest
        do {
            given = try JSONDecoder().decode(PublishRequest.self, from: Data(request.body.readableBytesView))
        } catch DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context) {
            let path = context.codingPath.map(\.stringValue)
            let reason = switch (path.first, path.count) {
            case ("destination", _): "'destination' (a string) is required"
            case ("body", _): "'body' must be a string (use 'body_base64' for binary)"
            case ("body_base64", _): "'body_base64' must be a string"
            case ("headers", 1): "'headers' must be an object of strings"
            case ("headers", _): "header '\(path[1])' must be a string, number or boolean"
            default: "expected a JSON object: {\"destination\": ..., \"body\": ...}"
            }
            return eventLoop.makeSucceededFuture(.error(.badRequest, "bad_request", reason))
        } catch {
            return eventLoop.makeSucceededFuture(.error(.badRequest, "bad_request", "expected a JSON object: {\"destination\": ..., \"body\": ...}"))
        }
        guard let destination = given.destination, !destination.isEmpty else {
            return eventLoop.makeSucceededFuture(.error(.badRequest, "bad_request", "'destination' (a string) is required"))
        }
        var body = ByteBuffer()
        if let text = given.body {
            body.writeString(text)
        } else if let encoded = given.body_base64 {
            guard let data = Data(base64Encoded: encoded) else {
                return eventLoop.makeSucceededFuture(.error(.badRequest, "bad_request", "'body_base64' is not valid base64"))
            }
            body.writeBytes(data)
        }
        let headers = (given.headers ?? [:]).sorted { $0.key < $1.key }.map { ($0.key, $0.value.text) }
        return operations.publish(destination: destination, headers: headers, body: body, on: eventLoop).map { outcome in
            switch outcome {
            case .accepted:
                return Response(status: .ok, json: ["published": destination])
            case .refused(let reason):
                return .error(.unprocessableEntity, "refused", reason)
            }
        }
    }

    /// A queue named in a path: `orders` is `/queue/orders`; a full destination may be given percent-encoded.
    static func queueName(_ segment: String) -> String {
        segment.hasPrefix("/") ? segment : QueueName.prefix + segment
    }

    static func bearer(_ authorization: String?) -> String? {
        guard let authorization, authorization.count > 7, authorization.lowercased().hasPrefix("bearer ") else { return nil }
        return String(authorization.dropFirst(7)).trimmingCharacters(in: .whitespaces)
    }

    /// Compares in time that depends only on the lengths, so a wrong token reveals nothing of the right one.
    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        var difference = UInt8(a.count == b.count ? 0 : 1)
        for index in 0..<max(a.count, b.count) {
            difference |= (index < a.count ? a[index] : 0) ^ (index < b.count ? b[index] : 0)
        }
        return difference == 0
    }

    /// JSON bytes of a response.
    static func encode(_ json: some Encodable) -> ByteBuffer {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let data = (try? encoder.encode(json)) ?? Data("{}".utf8)
        var buffer = ByteBuffer(bytes: data)
        buffer.writeString("\n")
        return buffer
    }
}

/// What the admin API does to the broker and the connections, across the event loops. Implemented by the server.
protocol AdminOperations: Sendable {
    func publish(destination: String, headers: [(String, String)], body: ByteBuffer, on eventLoop: any EventLoop) -> EventLoopFuture<AdminPublisher.Outcome>
    func connections(user: String?, limit: Int, on eventLoop: any EventLoop) -> EventLoopFuture<ConnectionList>
    func disconnect(session: String, on eventLoop: any EventLoop) -> EventLoopFuture<Bool>
    func queues(on eventLoop: any EventLoop) -> EventLoopFuture<[QueueInfo]>
    func queue(_ name: String, on eventLoop: any EventLoop) -> EventLoopFuture<QueueInfo?>
    func purge(queue: String, on eventLoop: any EventLoop) -> EventLoopFuture<Int?>
    func redrive(deadLetterQueue: String, on eventLoop: any EventLoop) -> EventLoopFuture<Int?>
    func destinations(on eventLoop: any EventLoop) -> EventLoopFuture<[DestinationInfo]>
    func rooms(on eventLoop: any EventLoop) -> EventLoopFuture<[RoomInfo]>
    func presence(room: String, on eventLoop: any EventLoop) -> EventLoopFuture<[PresenceInfo]?>
}

struct RoomInfo: Codable, Sendable {
    /// `<name>` of `/room/<name>` (a topic with history: its destination).
    var name: String
    var destination: String
    var members: Int
    var lastOffset: UInt64
    /// Messages kept for history and resume.
    var kept: Int
}

struct PresenceInfo: Codable, Sendable {
    var user: String
    var meta: [String: String]
    var connections: Int
}

struct RoomPresence: Codable, Sendable {
    var room: String
    var members: [PresenceInfo]
}

struct ConnectionInfo: Codable, Sendable {
    var session: String
    var transport: String
    var remote: String?
    var user: String?
    /// The STOMP version, once CONNECTED.
    var version: String?
    var subscriptions: Int

    /// Every key, `null` included (the synthesized encoding leaves nil out).
    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(self.session, forKey: .session)
        try container.encode(self.transport, forKey: .transport)
        try container.encode(self.remote, forKey: .remote)
        try container.encode(self.user, forKey: .user)
        try container.encode(self.version, forKey: .version)
        try container.encode(self.subscriptions, forKey: .subscriptions)
    }
}

struct ConnectionList: Codable, Sendable {
    /// All open connections; `connections` holds at most the request's `limit` of them.
    var total: Int
    var connections: [ConnectionInfo]
}

struct QueueInfo: Codable, Sendable {
    var name: String
    var ready: Int
    var unacked: Int
    var consumers: Int
}

struct DestinationInfo: Codable, Sendable {
    /// A destination or pattern with subscribers.
    var pattern: String
    var subscribers: Int
}

struct QueueChange: Codable, Sendable {
    var queue: String
    var purged: Int?
    var moved: Int?
}

/// The body of `POST /api/v1/publish`.
private struct PublishRequest: Decodable {
    var destination: String?
    var body: String?
    var body_base64: String?
    var headers: [String: HeaderValue]?

    /// A header value as JSON gives it: a string, a number or a boolean, written as STOMP would carry it.
    struct HeaderValue: Decodable {
        var text: String

        init(from decoder: any Decoder) throws {
            let container = try decoder.singleValueContainer()
            if let flag = try? container.decode(Bool.self) {
                self.text = flag ? "true" : "false"
            } else if let integer = try? container.decode(Int64.self) {
                self.text = String(integer)
            } else if let number = try? container.decode(Double.self) {
                self.text = String(number)
            } else {
                self.text = try container.decode(String.self)
            }
        }
    }
}
