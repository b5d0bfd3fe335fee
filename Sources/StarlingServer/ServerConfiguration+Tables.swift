import Foundation
import StarlingBroker

extension ServerConfiguration {
    /// One of `deliveryPolicyKeys` of a `[[policy]]` table matching `pattern`.
    static func applyDeliveryKey(_ entry: (key: String, value: String, location: String), to policy: inout DeliveryPolicy, pattern: String) throws(SettingError) {
        let isTopic = pattern.hasPrefix(TopicName.prefix)
        let isRoom = pattern.hasPrefix(RoomName.roomPrefix)
        guard isTopic || (isRoom && entry.key == "slow-consumer") else {
            let kinds = entry.key == "slow-consumer" ? "/topic/ and /room/ patterns (queues stop dispatching to a slow consumer)" : "/topic/ patterns"
            throw SettingError("\(entry.location): '\(entry.key)' applies to \(kinds), not '\(pattern)'")
        }
        switch entry.key {
        case "slow-consumer":
            guard let value = DeliveryPolicy.SlowConsumer(rawValue: entry.value) else {
                let names = DeliveryPolicy.SlowConsumer.allCases.map(\.rawValue).joined(separator: ", ")
                throw SettingError("\(entry.location): slow-consumer: expected one of \(names), got '\(entry.value)'")
            }
            guard isTopic || value == .disconnect else {
                throw SettingError(
                    "\(entry.location): slow-consumer: rooms deliver every message or disconnect (clients resume with x-resume-from); '\(entry.value)' applies to /topic/ patterns"
                )
            }
            policy.slowConsumer = value
        case "max-rate":
            guard let rate = SessionStateMachine.rate(entry.value) else {
                throw SettingError(
                    "\(entry.location): max-rate: \(SessionStateMachine.rateExpectation), got '\(entry.value)'"
                )
            }
            policy.maxRate = rate
        default:
            guard let count = Int(entry.value), (1...1_000_000).contains(count) else {
                throw SettingError("\(entry.location): max-pending-messages: expected a number of messages from 1 to 1000000, got '\(entry.value)'")
            }
            policy.maxPendingMessages = count
        }
    }
}

extension ServerConfiguration {
    /// The `[auth]` table: `users-file`, `anonymous`.
    mutating func setAuth(_ table: ConfigFile.Table) throws(SettingError) {
        var auth = Auth()
        for entry in table.entries {
            switch entry.key {
            case "users-file":
                auth.usersFile = entry.value
            case "jwt-secret":
                auth.jwtSecret = entry.value
            case "jwt-secret-file":
                guard let secret = try? String(contentsOfFile: entry.value, encoding: .utf8) else {
                    throw SettingError("\(entry.location): jwt-secret-file: cannot read '\(entry.value)'")
                }
                auth.jwtSecret = secret.trimmingCharacters(in: .whitespacesAndNewlines)
            case "jwt-public-key-file": auth.jwtPublicKeyFile = entry.value
            case "jwt-audience": auth.jwtAudience = entry.value
            case "jwt-issuer": auth.jwtIssuer = entry.value
            case "jwt-user-claim": auth.jwtUserClaim = entry.value
            case "jwt-roles-claim": auth.jwtRolesClaim = entry.value
            case "failed-login-limit", "failed-login-window-seconds":
                guard let number = Int(entry.value), (1...1_000_000).contains(number) else {
                    throw SettingError("\(entry.location): \(entry.key): expected 1...1000000, got '\(entry.value)'")
                }
                if entry.key == "failed-login-limit" { auth.failedLoginLimit = number } else { auth.failedLoginWindowSeconds = number }
            case "jwt-leeway-seconds":
                guard let seconds = Int(entry.value), (0...3600).contains(seconds) else {
                    throw SettingError("\(entry.location): jwt-leeway-seconds: expected 0...3600, got '\(entry.value)'")
                }
                auth.jwtLeewaySeconds = seconds
            case "anonymous":
                guard entry.value == "true" || entry.value == "false" else {
                    throw SettingError("\(entry.location): anonymous: expected true or false, got '\(entry.value)'")
                }
                auth.anonymous = entry.value == "true"
            default:
                throw SettingError(
                    "\(entry.location): unknown [auth] key '\(entry.key)' (expected users-file, anonymous, jwt-secret, jwt-secret-file, "
                        + "jwt-public-key-file, jwt-audience, jwt-issuer, jwt-user-claim, jwt-roles-claim, jwt-leeway-seconds, failed-login-limit, failed-login-window-seconds)"
                )
            }
        }
        if let secret = auth.jwtSecret, secret.utf8.count < 32 {
            throw SettingError("\(table.location): jwt-secret must be at least 32 bytes (HS256 keys shorter than the hash are guessable)")
        }
        guard auth.usersFile != nil || auth.anonymous || auth.jwtSecret != nil || auth.jwtPublicKeyFile != nil else {
            throw SettingError("\(table.location): [auth] needs users-file or jwt-secret / jwt-public-key-file, or anonymous = true to accept any login")
        }
        self.auth = auth
    }

    /// True for addresses that only this machine reaches (127.0.0.0/8, ::1, localhost).
    static func isLoopback(_ host: String) -> Bool {
        host == "localhost" || host == "::1" || host == "[::1]" || host.hasPrefix("127.")
    }
}

extension ServerConfiguration {
    /// The `[admin]` table: `token` (or `token-file`), the admin API's bearer token.
    mutating func setAdmin(_ table: ConfigFile.Table) throws(SettingError) {
        var token: String?
        for entry in table.entries {
            switch entry.key {
            case "token":
                token = entry.value
            case "token-file":
                guard let text = try? String(contentsOfFile: entry.value, encoding: .utf8) else {
                    throw SettingError("\(entry.location): token-file: cannot read '\(entry.value)'")
                }
                token = text.trimmingCharacters(in: .whitespacesAndNewlines)
            default:
                throw SettingError("\(entry.location): unknown [admin] key '\(entry.key)' (expected token, token-file)")
            }
        }
        guard let token else { throw SettingError("\(table.location): [admin] needs token or token-file") }
        guard token.utf8.count >= 16, token.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            throw SettingError("\(table.location): the admin token must be at least 16 printable characters, without spaces")
        }
        self.adminToken = token
    }
}
