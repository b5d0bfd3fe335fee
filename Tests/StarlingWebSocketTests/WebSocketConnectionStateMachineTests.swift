import NIOCore
import Testing

@testable import StarlingWebSocket

@Suite("WebSocket connection state machine (no channel)")
struct WebSocketConnectionStateMachineTests {
    func machine(maxMessageSize: Int = 100, deflate: NegotiatedDeflate? = nil) -> WebSocketConnectionStateMachine {
        WebSocketConnectionStateMachine(maxMessageSize: maxMessageSize, deflate: deflate)
    }

    func frame(_ opcode: WebSocketOpcode, _ text: String = "", fin: Bool = true) -> WebSocketFrame {
        WebSocketFrame(fin: fin, opcode: opcode, payload: buffer(text))
    }

    @Test("Fragments produce no action until the last one delivers the whole message")
    func fragments() {
        var machine = self.machine()
        #expect(machine.receivedFrame(self.frame(.binary, "ab", fin: false)) == .none)
        #expect(machine.receivedFrame(self.frame(.ping, "p")) == .sendPong(buffer("p")))
        #expect(machine.receivedFrame(self.frame(.continuation, "cd", fin: false)) == .none)
        #expect(machine.receivedFrame(self.frame(.continuation, "e")) == .deliver(buffer("abcde"), isText: false))
    }

    @Test("Each message rule maps to its error action")
    func errors() {
        var continuation = self.machine()
        #expect(continuation.receivedFrame(self.frame(.continuation, "x")) == .fail(.unexpectedContinuation))
        #expect(continuation.receivedFrame(self.frame(.text, "after")) == .none, "nothing after failing")

        var interleaved = self.machine()
        _ = interleaved.receivedFrame(self.frame(.text, "a", fin: false))
        #expect(interleaved.receivedFrame(self.frame(.text, "b")) == .fail(.expectedContinuation))

        var tooBig = self.machine(maxMessageSize: 3)
        #expect(tooBig.receivedFrame(self.frame(.binary, "abcd")) == .fail(.messageTooLarge(limit: 3)))

        var badClose = self.machine()
        #expect(badClose.receivedFrame(WebSocketFrame(opcode: .close, payload: buffer([3]))) == .fail(.invalidClosePayload))

        var badCode = self.machine()
        #expect(badCode.receivedFrame(WebSocketFrame(opcode: .close, payload: closePayload(1005))) == .fail(.invalidCloseCode(1005)))

        var parser = self.machine()
        #expect(parser.parserFailed(.reservedBitsSet) == .fail(.reservedBitsSet))
        #expect(WebSocketProtocolError.reservedBitsSet.closeCode == .protocolError)
    }

    @Test("Our close waits for the peer's Close, which ends the handshake with the peer's code")
    func closingHandshake() {
        var machine = self.machine()
        #expect(machine.closeRequested(code: .goingAway, reason: "bye") == .sendClose(.goingAway, reason: "bye"))
        #expect(machine.isClosing)
        #expect(machine.closeRequested(code: .normalClosure, reason: "") == .none)
        #expect(machine.receivedFrame(self.frame(.text, "late")) == .none)
        #expect(machine.receivedFrame(WebSocketFrame(opcode: .close, payload: closePayload(1000))) == .closeConnection(code: .normalClosure))
        #expect(machine.closeTimedOut() == .none)
    }

    @Test("A timed-out close reports the code we sent")
    func timeout() {
        var machine = self.machine()
        _ = machine.closeRequested(code: .policyViolation, reason: "")
        #expect(machine.closeTimedOut() == .closeConnection(code: .policyViolation))
    }

    @Test("The peer's Close is acknowledged with its code, or 1000 when empty")
    func peerClose() {
        var withCode = self.machine()
        #expect(withCode.receivedFrame(WebSocketFrame(opcode: .close, payload: closePayload(3000, Array("x".utf8))))
            == .acknowledgeClose(peerCode: WebSocketCloseCode(rawValue: 3000), reply: WebSocketCloseCode(rawValue: 3000)))
        var empty = self.machine()
        #expect(empty.receivedFrame(self.frame(.close)) == .acknowledgeClose(peerCode: nil, reply: .normalClosure))
    }
}
