import NIOCore
import StarlingSTOMP

/// The connection's timers, driven by its loop's `ConnectionClock`: the CONNECT deadline, outgoing heart-beats and
/// the silent-client check (STOMP 1.2 "Heart-beating").
extension STOMPConnection {

    func startHeartbeats(_ heartbeat: SessionStateMachine.NegotiatedHeartbeat) {
        let now = NIODeadline.now()
        if heartbeat.send > 0 {
            // Checking every half interval guarantees a byte at least every interval (plus one clock tick).
            let period = TimeAmount.milliseconds(Int64(max(heartbeat.send / 2, 1)))
            self.sendPeriod = period
            self.nextSendCheck = now + period
        }
        if heartbeat.receive > 0 {
            self.receiveTimeout = .milliseconds(Int64(Double(heartbeat.receive) * self.settings.heartbeatGraceFactor))
            self.lastRead = now
        }
    }

    func clockTick(now: NIODeadline) -> Bool {
        guard !self.closed, let transport = self.transport else { return false }
        if let deadline = self.connectDeadline {
            if now >= deadline {
                self.logger.info("no CONNECT in time", metadata: self.logMetadata)
                let milliseconds = self.settings.connectTimeout.nanoseconds / 1_000_000
                self.fail("no CONNECT frame within \(milliseconds) ms", receiptID: nil, detail: nil)
                return false
            }
            return true
        }
        if let timeout = self.receiveTimeout, now >= self.lastRead + timeout {
            self.logger.info("heart-beat timeout", metadata: self.logMetadata)
            self.close(.heartbeatTimeout)
            return false
        }
        if let box = self.queueBox, !box.state.autoSettles.isEmpty, transport.isWritable { self.settleAutoDeliveries() }
        if let period = self.sendPeriod, now >= self.nextSendCheck {
            if !self.wroteSinceTick {
                transport.writeHeartbeat()
                self.scheduleFlush()
            }
            self.wroteSinceTick = false
            self.nextSendCheck = now + period
        }
        return self.sendPeriod != nil || self.receiveTimeout != nil || !(self.queueBox?.state.autoSettles.isEmpty ?? true)
    }
}
