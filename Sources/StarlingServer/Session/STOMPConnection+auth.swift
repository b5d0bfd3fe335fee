import Foundation
import NIOCore
import NIOPosix
import StarlingSTOMP

/// CONNECT with `[auth] users-file` (issue 9): the credentials are checked on the authentication thread pool (PBKDF2
/// must not stall an event loop), and the session starts only when they hold. A wrong password, an unknown user and
/// a missing login get the same ERROR; an address with too many recent failures is refused without a check.
extension STOMPConnection {
    /// Input held while authenticating or throttled, at most: one frame of the largest body, and room for headers.
    var maxHeldInput: Int { self.settings.parserLimits.maxBodySize + 128 * 1024 }

    func authenticate(
        login: String?, passcode: String?, with authentication: Authentication, then start: @escaping (AuthenticatedUser) -> Void
    ) {
        let address = self.transport?.remoteAddress ?? "unknown"
        guard authentication.limiter.allows(address) else {
            self.logger.notice("login refused: too many failures", metadata: self.logMetadata.merging(["address": "\(address)"]) { $1 })
            self.fail("authentication failed: too many failed logins from this address; retry later", receiptID: nil, detail: nil)
            return
        }
        self.authenticating = true
        let authenticator = authentication.authenticator
        let checked = authentication.pool.runIfActive(eventLoop: self.loop.eventLoop) {
            authenticator.authenticate(login: login, passcode: passcode)
        }
        checked.assumeIsolated().whenComplete { result in
            self.authenticating = false
            guard !self.closed else { return }
            guard case .success(let user?) = result else {
                authentication.limiter.recordFailure(address)
                self.logger.notice("login failed", metadata: self.logMetadata.merging(["login": "\(login ?? "")", "address": "\(address)"]) { $1 })
                self.fail("authentication failed: wrong login or passcode", receiptID: nil, detail: nil)
                return
            }
            start(user)
            self.resumeHeldInput()
        }
    }

    /// Goes on with the input held while authenticating or throttled.
    private func resumeHeldInput() {
        guard var held = self.heldInput else { return }
        self.heldInput = nil
        self.received(&held)
    }

    /// Keeps what arrived during authentication for when it ends.
    func holdInput(_ buffer: inout ByteBuffer) {
        guard buffer.readableBytes > 0 else { return }
        if self.heldInput == nil {
            self.heldInput = buffer
        } else {
            self.heldInput!.writeBuffer(&buffer)
        }
        buffer.moveReaderIndex(to: buffer.writerIndex)
        if self.heldInput!.readableBytes > self.maxHeldInput {
            self.heldInput = nil
            self.authenticating = false
            self.fail("too much data held (\(self.maxHeldInput) bytes at most while the login is checked or the client is over max-frame-rate)", receiptID: nil, detail: nil)
        }
    }

    /// `[[acl]]`: whether this session may SUBSCRIBE or SEND to `destination`; when not, an ERROR naming it (and
    /// the connection closes, so nothing of it is ever delivered).
    func mayAccess(_ operation: AccessControl.Operation, _ destination: String, receipt: String?) -> Bool {
        guard let access = self.settings.access else { return true }
        if operation == .send, self.sendAllowed.contains(destination) { return true }
        guard access.allows(operation, destination, user: self.login, roles: self.roles) else {
            let who = self.login.map { "'\($0)'" } ?? "an anonymous session"
            self.logger.notice("access denied", metadata: self.logMetadata.merging(["operation": "\(operation.rawValue)", "destination": "\(destination)"]) { $1 })
            self.fail("access denied: \(who) may not \(operation.rawValue) to '\(destination)'", receiptID: receipt, detail: nil)
            return false
        }
        if operation == .send {
            if self.sendAllowed.count >= 256 { self.sendAllowed.removeAll() }
            self.sendAllowed.insert(destination)
        }
        return true
    }

    /// Arms the token's expiry: at `expires` (seconds since 1970) the session gets an ERROR and closes.
    func expire(at expires: Double?) {
        self.expiry?.cancel()
        self.expiry = nil
        guard let expires else { return }
        let milliseconds = Int64(max(0, (expires - Date().timeIntervalSince1970) * 1000))
        self.expiry = self.loop.eventLoop.assumeIsolated().scheduleTask(in: .milliseconds(milliseconds)) {
            guard !self.closed else { return }
            self.logger.info("token expired", metadata: self.logMetadata)
            self.fail("token expired: refresh it with a SEND to \(SessionStateMachine.tokenDestination) before it expires", receiptID: nil, detail: nil)
        }
    }

    /// A SEND to `/control/token`: a fresh JWT for the same user replaces the session's (new expiry, new roles).
    func refreshToken(_ token: String, receipt: String?) {
        guard let authenticator = self.settings.authentication?.authenticator, authenticator.tokens != nil else {
            self.fail("token refresh needs JWT authentication ([auth] jwt-secret or jwt-public-key-file)", receiptID: receipt, detail: nil)
            return
        }
        switch authenticator.verify(token: token) {
        case .failure(let failure):
            self.fail("token refresh refused: \(failure)", receiptID: receipt, detail: nil)
        case .success(let user) where user.name != (self.login ?? ""):
            self.fail("token refresh refused: the token is for another user", receiptID: receipt, detail: nil)
        case .success(let user):
            self.roles = user.roles
            self.sendAllowed.removeAll()
            // New roles may take away what the old ones allowed: no subscription outlives its permission.
            if let access = self.settings.access,
                let lost = self.machine.subscribedDestinations.first(where: { !access.allows(.subscribe, $0, user: self.login, roles: user.roles) })
            {
                self.logger.notice("access denied", metadata: self.logMetadata.merging(["operation": "subscribe", "destination": "\(lost)"]) { $1 })
                self.fail(
                    "access denied: with the refreshed token '\(user.name)' may no longer subscribe to '\(lost)'", receiptID: receipt, detail: nil
                )
                return
            }
            self.expire(at: user.expires)
            self.sendReceipt(receipt)
        }
    }

    /// `max-frame-rate`: takes a token for the frame just handled. When the bucket is empty, reading pauses until it
    /// holds a token again, and true is returned (the caller holds the rest of its input meanwhile).
    func spendFrameToken() -> Bool {
        let rate = self.settings.maxFrameRate
        guard rate > 0 else { return false }
        self.frameTokens -= 1
        guard self.frameTokens < 0 else { return false }
        let now = NIODeadline.now()
        let elapsed = Double((now - self.frameTokensAt).nanoseconds) / 1e9
        self.frameTokens = min(rate, self.frameTokens + elapsed * rate)
        self.frameTokensAt = now
        guard self.frameTokens < 0 else { return false }
        self.metrics.server.limitHit(.maxFrameRate)
        self.throttled = true
        self.transport?.setReading(false)
        let wait = TimeAmount.nanoseconds(Int64((-self.frameTokens + 1) / rate * 1e9))
        self.loop.eventLoop.assumeIsolated().scheduleTask(in: wait) {
            guard !self.closed else { return }
            self.throttled = false
            self.transport?.setReading(true)
            self.resumeHeldInput()
        }
        return true
    }
}
