"""Bad inputs (issue 9): a table-driven suite of malformed frames, bad escapes, oversized headers and bodies, invalid
UTF-8, bad WebSocket frames and handshakes, deflate bombs, wrong credentials, expired tokens, forbidden destinations
and floods.

Every case names its transport, the bytes it sends and the exact outcome it expects today: the ERROR's `message`
(exact, or a stable prefix where it carries variable parts) and `receipt-id`, a WebSocket close code, or an HTTP
status and body, and whether the connection closes (a STOMP ERROR always closes; an accepted input keeps the
connection usable). After every case a fresh client must still get through CONNECT, SUBSCRIBE, SEND and RECEIPT
and receive its MESSAGE, and the server process must be alive.

Servers: one per configuration, shared by the module (`default`, `limits` with small `--set` limits, `auth` with a
users file, a JWT secret and `[[acl]]` tables, `connlimit` with a small per-address connection limit).

A case that shows behaviour that looks wrong is marked `xfail(strict=True)` with the reason (it pins the behaviour the
server should have). The first run found four such (control characters echoed into ERRORs, HTTP 400s left open,
a JWT with a string `exp` accepted, an unknown user costing more time than a known one); all are fixed.
"""

from __future__ import annotations

import socket
import struct
import subprocess
import threading
import time
import zlib
from dataclasses import dataclass, field
from typing import Callable

import jwt
import pytest

from e2e_helpers import (
    Closed,
    Frame,
    FrameParser,
    RawStompBase,
    RawTcpStomp,
    StarlingServer,
    encode_frame,
    http_request,
    starling_bin,
    start_or_fail,
    uid,
    ws_frame,
    ws_handshake_request,
)

# --------------------------------------------------------------------------------------------------
# Server configurations
# --------------------------------------------------------------------------------------------------

JWT_SECRET = "bad-inputs-test-secret-0123456789abcdef"  # >= 32 bytes
ALICE_PW = "alice-Pa55word-Secret"
BOB_PW = "bob-Pa55word-Secret"
OTHER_SECRET = "some-other-secret-that-is-32-bytes-long!"

DEFAULT_MAX_MESSAGE = 1024 * 1024 + 128 * 1024  # max-body-size + 128 KiB

LIMITS_ARGS = [
    "--set", "max-header-length=256",
    "--set", "max-header-count=8",
    "--set", "max-body-size=1024",
    "--set", "max-message-size=4096",
    "--set", "max-subscriptions=4",
    "--set", "max-frame-rate=1000",
    "--set", "presence-max-meta-bytes=128",
    "--set", "max-pending-bytes=65536",
    "--set", "connect-timeout-ms=500",
]

ACL = """
[[acl]]
match = "/topic/secret.#"
subscribe = "role:admin"
send = "role:admin"

[[acl]]
match = "/topic/public.#"
subscribe = "*"
send = "*"

[[acl]]
match = "/topic/feed.#"
subscribe = "*"
send = "alice"

[[acl]]
match = "/room/#"
subscribe = "*"
send = "*"
"""


@dataclass
class Env:
    """A running server plus how a well-behaved client talks to it."""

    name: str
    srv: StarlingServer
    creds: dict = field(default_factory=dict)  # extra CONNECT headers of the health-check client
    topic_prefix: str = "/topic/"  # where the health-check client may subscribe and send
    source: str | None = None  # source address of the health-check client


def _start(tmp_path_factory, name: str, args: list[str]) -> StarlingServer:
    return start_or_fail(StarlingServer(tmp_path_factory.mktemp(name), args))


def _stop(env: Env) -> None:
    alive = env.srv.alive()
    env.srv.stop()
    assert alive, f"the {env.name} server died:\n{env.srv.output()}"


def passwd(users_file, user: str, password: str, *extra: str) -> None:
    result = subprocess.run(
        [starling_bin(), "passwd", str(users_file), user, "--iterations", "1000", *extra],
        input=password + "\n", capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def default_env(tmp_path_factory):
    env = Env("default", _start(tmp_path_factory, "bad-default", []))
    yield env
    _stop(env)


@pytest.fixture(scope="module")
def limits_env(tmp_path_factory):
    env = Env("limits", _start(tmp_path_factory, "bad-limits", LIMITS_ARGS))
    yield env
    _stop(env)


@pytest.fixture(scope="module")
def auth_env(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad-auth-conf")
    users = d / "users.txt"
    passwd(users, "alice", ALICE_PW, "--roles", "admin")
    passwd(users, "bob", BOB_PW)
    config = d / "starling.toml"
    config.write_text(
        "[auth]\n"
        f'users-file = "{users}"\n'
        f'jwt-secret = "{JWT_SECRET}"\n'
        "jwt-leeway-seconds = 0\n"
        "failed-login-limit = 1000\n" + ACL
    )
    env = Env("auth", _start(tmp_path_factory, "bad-auth", ["--config", str(config)]),
              creds={"login": "bob", "passcode": BOB_PW}, topic_prefix="/topic/public.")
    yield env
    _stop(env)


@pytest.fixture(scope="module")
def connlimit_env(tmp_path_factory):
    env = Env("connlimit", _start(tmp_path_factory, "bad-connlimit", ["--set", "max-connections-per-ip=4"]))
    yield env
    _stop(env)


@pytest.fixture(scope="module")
def lockout_env(tmp_path_factory):
    """failed-login-limit 3; the health check connects from 127.0.0.2, which a locked-out 127.0.0.1 does not affect."""
    d = tmp_path_factory.mktemp("bad-lockout-conf")
    users = d / "users.txt"
    passwd(users, "bob", BOB_PW)
    config = d / "starling.toml"
    config.write_text(f'[auth]\nusers-file = "{users}"\nfailed-login-limit = 3\nfailed-login-window-seconds = 600\n')
    env = Env("lockout", _start(tmp_path_factory, "bad-lockout", ["--config", str(config)]),
              creds={"login": "bob", "passcode": BOB_PW}, source="127.0.0.2")
    yield env
    _stop(env)


# --------------------------------------------------------------------------------------------------
# Clients
# --------------------------------------------------------------------------------------------------


class TcpClient(RawTcpStomp):
    """RawTcpStomp with an optional source address and a record of every byte received."""

    def __init__(self, port: int, source: str | None = None, timeout: float = 5.0):
        if source is None:
            super().__init__(port, timeout=timeout)
        else:
            RawStompBase.__init__(self)
            self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0))
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.received = bytearray()
        self.close_code = None

    def _read(self, timeout: float):
        data = super()._read(timeout)
        if data:
            self.received += data
        return data

    def send_stomp(self, data: bytes) -> None:
        self.send_raw(data)

    def send_wire(self, data: bytes) -> None:
        self.send_raw(data)


def _http_request_from(source: str, port: int, request: bytes, timeout: float):
    """http_request from a given source address: (status, headers, rest, socket)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0))
    s.sendall(request)
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        assert chunk, f"closed before a complete HTTP response header: {buf!r}"
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return int(lines[0].split(" ", 2)[1]), headers, rest, s


def inflate_raw(payload: bytes) -> bytes:
    return zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff")


def deflate_raw(data: bytes, wbits: int = -15) -> bytes:
    """One permessage-deflate message body (RFC 7692 7.2.1: the trailing 00 00 ff ff removed)."""
    c = zlib.compressobj(9, zlib.DEFLATED, wbits)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


class WsClient:
    """STOMP over a hand-written WebSocket (raw socket): any frame can be sent, permessage-deflate when negotiated
    (server messages are inflated, `send_stomp` compresses), and close frames are reported with their code."""

    def __init__(self, port: int, extensions: str | None = None, protocols: str | None = "v12.stomp",
                 path: str = "/ws", timeout: float = 5.0, source: str | None = None):
        extra = f"Sec-WebSocket-Extensions: {extensions}\r\n" if extensions else ""
        request = ws_handshake_request(path, protocols=protocols, extra=extra)
        if source is None:
            status, headers, rest, sock = http_request(port, request, timeout)
        else:
            status, headers, rest, sock = _http_request_from(source, port, request, timeout)
        assert status == 101, f"handshake refused: {status} {headers}"
        self.sock = sock
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray(rest)
        self.headers = headers
        negotiated = headers.get("sec-websocket-extensions", "")
        self.deflate = "permessage-deflate" in negotiated
        self.parser = FrameParser()
        self.pending: list[Frame] = []
        self.received = bytearray()  # inflated payloads of data messages
        self.close_code: int | None = None
        self.eof = False
        self.connected_frame = None

    # -- sending ----------------------------------------------------------------------------------
    def send_wire(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_stomp(self, data: bytes) -> None:
        if self.deflate:
            self.sock.sendall(ws_frame(0x1, deflate_raw(data), rsv1=True))
        else:
            self.sock.sendall(ws_frame(0x1, data))

    def send_frame(self, command: str, headers=None, body: bytes | str = b"") -> None:
        self.send_stomp(encode_frame(command, headers, body))

    # -- receiving --------------------------------------------------------------------------------
    def _fill(self, n: int, deadline: float) -> bool:
        while len(self.buf) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("timed out reading a WebSocket frame")
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                raise TimeoutError("timed out reading a WebSocket frame") from None
            except (ConnectionResetError, BrokenPipeError):
                return False
            if not chunk:
                return False
            self.buf += chunk
        return True

    def _frame(self, deadline: float):
        """(fin, rsv1, opcode, payload) or None at end of stream."""
        if not self._fill(2, deadline):
            return None
        b0, b1 = self.buf[0], self.buf[1]
        n, off = b1 & 0x7F, 2
        if n == 126:
            if not self._fill(4, deadline):
                return None
            n, off = struct.unpack("!H", self.buf[2:4])[0], 4
        elif n == 127:
            if not self._fill(10, deadline):
                return None
            n, off = struct.unpack("!Q", self.buf[2:10])[0], 10
        if b1 & 0x80:
            off += 4  # a server never masks, but be tolerant
        if not self._fill(off + n, deadline):
            return None
        payload = bytes(self.buf[off: off + n])
        del self.buf[: off + n]
        return bool(b0 & 0x80), bool(b0 & 0x40), b0 & 0x0F, payload

    def pump(self, timeout: float) -> None:
        """Read one WebSocket message (or control frame) and feed what it carries; sets `eof` / `close_code`."""
        deadline = time.monotonic() + timeout
        parts, compressed = [], False
        while True:
            fr = self._frame(deadline)
            if fr is None:
                self.eof = True
                return
            fin, rsv1, op, payload = fr
            if op == 0x8:
                if self.close_code is None:
                    self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                    try:  # complete the closing handshake
                        self.sock.sendall(ws_frame(0x8, payload[:2]))
                    except OSError:
                        pass
                continue
            if op in (0x9, 0xA):
                continue
            if op in (0x1, 0x2):
                parts, compressed = [payload], rsv1
            else:
                parts.append(payload)
            if fin:
                data = b"".join(parts)
                if compressed:
                    data = inflate_raw(data)
                self.received += data
                self.pending.extend(self.parser.feed(data))
                return

    def recv_frame(self, timeout: float = 5.0) -> Frame:
        deadline = time.monotonic() + timeout
        while not self.pending:
            if self.eof:
                raise Closed()
            self.pump(max(0.001, deadline - time.monotonic()))
        return self.pending.pop(0)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def open_client(env: Env, transport: str, extensions: str | None = None):
    if transport == "ws":
        return WsClient(env.srv.http_port, extensions=extensions, source=env.source)
    return TcpClient(env.srv.stomp_port, source=env.source)


def stomp_connect(client, creds: dict, version: str = "1.2") -> Frame:
    headers = {"accept-version": version, "host": "127.0.0.1", **creds}
    client.send_stomp(encode_frame("CONNECT", headers))
    f = client.recv_frame(10)
    assert f.command == "CONNECTED", f"no CONNECTED: {f!r}"
    return f


def send_in_background(client, data: bytes, wire: bool) -> threading.Thread:
    """Writes `data` from a thread: the server may close (or stop reading) before all of it is written."""

    def run():
        try:
            (client.send_wire if wire else client.send_stomp)(data)
        except OSError:
            pass

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


# --------------------------------------------------------------------------------------------------
# The server still serves
# --------------------------------------------------------------------------------------------------


def assert_serving(env: Env, transport: str = "tcp") -> None:
    """A fresh client: CONNECT, SUBSCRIBE (receipt), SEND (receipt), and its MESSAGE arrives; the process is alive."""
    assert env.srv.alive(), f"the {env.name} server died:\n{env.srv.output()}"
    deadline = time.monotonic() + 5
    while True:  # a connection limit may still count a client that just closed: retry briefly
        client = None
        try:
            client = open_client(env, transport)
            stomp_connect(client, env.creds)
            break
        except (AssertionError, Closed, TimeoutError, OSError):
            if client is not None:
                client.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)
    try:
        dest = env.topic_prefix + uid()
        client.send_frame("SUBSCRIBE", {"id": "check", "destination": dest, "receipt": "check-sub"})
        f = client.recv_frame(5)
        assert f.command == "RECEIPT" and f.headers.get("receipt-id") == "check-sub", f
        body = "still serving " + uid()
        client.send_frame("SEND", {"destination": dest, "receipt": "check-send"}, body)
        got = [client.recv_frame(5), client.recv_frame(5)]
        assert sorted(g.command for g in got) == ["MESSAGE", "RECEIPT"], got
        message = next(g for g in got if g.command == "MESSAGE")
        assert message.body == body.encode() and message.headers.get("destination") == dest, message
        receipt = next(g for g in got if g.command == "RECEIPT")
        assert receipt.headers.get("receipt-id") == "check-send", receipt
    finally:
        client.close()
    assert env.srv.alive(), f"the {env.name} server died:\n{env.srv.output()}"


# --------------------------------------------------------------------------------------------------
# Expected outcomes
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Error:
    """One STOMP ERROR, last frame seen; then the connection closes (TCP end of stream; over WebSocket a close frame
    with `ws_close`). `prefix`: `message` only has to start with the text (the rest varies)."""

    message: str
    receipt: str | None = None
    prefix: bool = False
    ws_close: int = 1008
    closes: bool = True


@dataclass(frozen=True)
class Receipt:
    """The input is accepted: a RECEIPT with this id, no ERROR, and the connection stays open and usable."""

    receipt_id: str
    closes: bool = False


@dataclass(frozen=True)
class WsClose:
    """The WebSocket is closed with this code, before any STOMP frame; then the TCP connection ends."""

    code: int
    closes: bool = True


@dataclass(frozen=True)
class Http:
    """An HTTP response with this status whose body starts with `body`; `closes`: the server then closes the TCP
    connection (every refusal says `Connection: close`)."""

    status: int
    body: str | None = None
    closes: bool = True


@dataclass
class Case:
    id: str
    env: str  # default | limits | auth
    transport: str  # tcp | ws | http
    send: bytes | Callable[[], bytes]  # tcp: raw stream; ws: wire bytes (frames); http: the request
    expect: Error | Receipt | WsClose | Http
    connect: bool = True  # send the env's CONNECT first and wait for CONNECTED
    extensions: str | None = None  # ws: Sec-WebSocket-Extensions offered
    secret: str | None = None  # must appear neither in what the client receives nor in the server's log
    timeout: float = 5.0
    xfail: str | None = None

    def param(self):
        marks = [pytest.mark.xfail(strict=True, reason=self.xfail)] if self.xfail else []
        return pytest.param(self, id=f"{self.env}-{self.transport}-{self.id}", marks=marks)


def T(payload: bytes) -> bytes:
    """One masked text frame carrying `payload`."""
    return ws_frame(0x1, payload)


def Z(payload: bytes, opcode: int = 0x1) -> bytes:
    """One compressed (RSV1) frame carrying `payload` deflated."""
    return ws_frame(opcode, deflate_raw(payload), rsv1=True)


def connect_frame(**headers) -> bytes:
    return encode_frame("CONNECT", {"accept-version": "1.2", "host": "127.0.0.1", **headers})


def token(claims: dict, key: str | None = JWT_SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, key, algorithm=algorithm)


def now() -> int:
    return int(time.time())


PMD = "permessage-deflate"
UNKNOWN_DEST = ("unknown destination '/nope/x': destinations start with /topic/, /queue/, /temp-queue/, /user/, "
                "/room/ or /presence/")
AUTH_FAILED = "authentication failed: wrong login or passcode"
def _deflate_bomb(size: int, prefix: bytes = b"SEND\ndestination:/topic/bomb\n\n") -> bytes:
    """A permessage-deflate body of a STOMP SEND whose body is `size` zero bytes: about size/1000 on the wire."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = b"\0" * (1 << 20)
    parts = [c.compress(prefix)]
    left = size
    while left > 0:
        parts.append(c.compress(chunk[: min(left, len(chunk))]))
        left -= len(chunk)
    parts.append(c.compress(b"\0") + c.flush(zlib.Z_SYNC_FLUSH))
    return b"".join(parts)[:-4]


BOMB_5M = _deflate_bomb(4 * DEFAULT_MAX_MESSAGE)  # inflates to 4.7 MB, ~5 KB on the wire
BOMB_256M = _deflate_bomb(256 << 20)  # inflates to 256 MiB, ~260 KB on the wire
BOMB_SMALL = _deflate_bomb(64 * 1024)  # inflates to 64 KiB: past the limits server's 4096


def _fragments(payload: bytes, n: int, rsv1: bool = False) -> bytes:
    size = (len(payload) + n - 1) // n
    chunks = [payload[i: i + size] for i in range(0, len(payload), size)]
    return b"".join(ws_frame(0x1 if i == 0 else 0x0, c, fin=i == len(chunks) - 1, rsv1=rsv1 and i == 0)
                    for i, c in enumerate(chunks))


def _one_byte_fragments(payload: bytes) -> bytes:
    return _fragments(payload, len(payload))


def _raw_request(lines: list[str], body: bytes = b"") -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


KEY = "dGhlIHNhbXBsZSBub25jZQ=="

# PyJWT warns about short HMAC keys for HS384; the case only needs an algorithm the server refuses.
pytestmark = pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")

# --------------------------------------------------------------------------------------------------
# The cases
# --------------------------------------------------------------------------------------------------

CASES: list[Case] = [
    # ---- malformed frames (TCP, default limits) --------------------------------------------------
    Case("garbage-bytes", "default", "tcp", b"\x01\x02\x03 this is not stomp\n\n\x00",
         Error("Unknown command '\\x01\\x02\\x03 this is not stomp'"), connect=False),
    Case("lowercase-connect", "default", "tcp", b"connect\naccept-version:1.2\nhost:x\n\n\x00",
         Error("Unknown command 'connect'"), connect=False),
    Case("send-before-connect", "default", "tcp", b"SEND\ndestination:/topic/a\nreceipt:r1\n\nx\x00",
         Error("expected CONNECT or STOMP, got SEND", receipt="r1"), connect=False),
    Case("unknown-command", "default", "tcp", b"FROBNICATE\nreceipt:r\n\n\x00",
         Error("Unknown command 'FROBNICATE'", receipt="r")),
    Case("header-without-colon", "default", "tcp", b"SEND\ndestination:/topic/a\nnocolonhere\n\nx\x00",
         Error("Malformed header line 'nocolonhere'")),
    Case("header-empty-name", "default", "tcp", b"SEND\ndestination:/topic/a\n:value\n\nx\x00",
         Error("Malformed header line ':value'")),
    Case("content-length-not-a-number", "default", "tcp",
         b"SEND\ndestination:/topic/a\ncontent-length:abc\nreceipt:cl\n\nhello\x00",
         Error("Invalid content-length 'abc'", receipt="cl")),
    Case("content-length-negative", "default", "tcp", b"SEND\ndestination:/topic/a\ncontent-length:-1\n\nhello\x00",
         Error("Invalid content-length '-1'")),
    Case("content-length-leading-space", "default", "tcp",
         b"SEND\ndestination:/topic/a\ncontent-length: 5\n\nhello\x00", Error("Invalid content-length ' 5'")),
    Case("content-length-control-char", "default", "tcp",
         b"SEND\ndestination:/topic/a\ncontent-length:1\x00\n\nx\x00", Error("Invalid content-length '1\\x00'")),
    Case("content-length-too-short", "default", "tcp", b"SEND\ndestination:/topic/a\ncontent-length:2\n\nhello\x00",
         Error("Frame body not followed by a NUL octet")),
    Case("content-length-overflow", "default", "tcp",
         b"SEND\ndestination:/topic/a\ncontent-length:99999999999999999999999\n\nhello\x00",
         Error("Body larger than 1048576 bytes")),
    Case("stray-nul-between-frames", "default", "tcp", b"\x00SEND\ndestination:/topic/a\nreceipt:n\n\nx\x00",
         Error("Unknown command '\\x00SEND'", receipt="n")),
    Case("client-sends-connected", "default", "tcp", b"CONNECTED\nversion:1.2\n\n\x00",
         Error("CONNECTED is a server frame; a client may not send it")),
    Case("client-sends-message", "default", "tcp", b"MESSAGE\ndestination:/topic/a\n\nx\x00",
         Error("MESSAGE is a server frame; a client may not send it")),
    Case("connect-twice", "default", "tcp", b"CONNECT\naccept-version:1.2\nhost:x\nreceipt:r\n\n\x00",
         Error("already connected", receipt="r")),
    Case("unsupported-version", "default", "tcp", b"CONNECT\naccept-version:9.9\nhost:x\n\n\x00",
         Error("no supported protocol version in accept-version (supported: 1.0,1.1,1.2)"), connect=False),
    Case("bad-heart-beat", "default", "tcp", b"CONNECT\naccept-version:1.2\nhost:x\nheart-beat:-1,5\n\n\x00",
         Error("invalid heart-beat header '-1,5': expected two non-negative integers 'cx,cy'"), connect=False),
    Case("send-without-destination", "default", "tcp", b"SEND\nreceipt:r\n\nx\x00",
         Error("SEND frame has no 'destination' header", receipt="r")),
    Case("send-unknown-prefix", "default", "tcp", b"SEND\ndestination:/nope/x\nreceipt:r\n\nx\x00",
         Error(UNKNOWN_DEST, receipt="r")),
    Case("send-to-wildcard", "default", "tcp", b"SEND\ndestination:/topic/a.*\nreceipt:r\n\nx\x00",
         Error("'/topic/a.*' contains a wildcard ('*' or '#'); wildcards are allowed only when subscribing",
               receipt="r")),
    Case("send-empty-topic", "default", "tcp", b"SEND\ndestination:/topic/\nreceipt:r\n\nx\x00",
         Error("the topic name is empty", receipt="r")),
    Case("subscribe-without-id", "default", "tcp", b"SUBSCRIBE\ndestination:/topic/a\nreceipt:r\n\n\x00",
         Error("SUBSCRIBE frame has no 'id' header", receipt="r")),
    Case("subscribe-bad-ack-mode", "default", "tcp",
         b"SUBSCRIBE\nid:1\ndestination:/topic/a\nack:sometimes\nreceipt:r\n\n\x00",
         Error("invalid ack mode 'sometimes': expected auto, client or client-individual", receipt="r")),
    Case("subscribe-duplicate-id", "default", "tcp",
         b"SUBSCRIBE\nid:1\ndestination:/topic/a\n\n\x00SUBSCRIBE\nid:1\ndestination:/topic/b\nreceipt:r\n\n\x00",
         Error("subscription id '1' is already in use on this connection", receipt="r")),
    Case("subscribe-bad-prefetch", "default", "tcp",
         b"SUBSCRIBE\nid:1\ndestination:/queue/a\nprefetch-count:-3\nreceipt:r\n\n\x00",
         Error("invalid prefetch-count '-3': expected a non-negative integer (0 = unlimited)", receipt="r")),
    Case("unsubscribe-unknown-id", "default", "tcp", b"UNSUBSCRIBE\nid:zz\nreceipt:r\n\n\x00",
         Error("no subscription with id 'zz' on this connection", receipt="r")),
    Case("ack-unknown-id", "default", "tcp", b"ACK\nid:nope\nreceipt:r\n\n\x00",
         Error("ACK for unknown ack id 'nope': no unacknowledged message has it on this connection (already "
               "acknowledged, or never delivered here)", receipt="r")),
    Case("commit-unknown-transaction", "default", "tcp", b"COMMIT\ntransaction:nope\nreceipt:r\n\n\x00",
         Error("unknown transaction 'nope'", receipt="r")),
    Case("begin-twice", "default", "tcp", b"BEGIN\ntransaction:t\n\n\x00BEGIN\ntransaction:t\nreceipt:r\n\n\x00",
         Error("transaction 't' is already open", receipt="r")),
    Case("nack-in-stomp-1.0", "default", "tcp",
         b"CONNECT\naccept-version:1.0\nhost:x\n\n\x00NACK\nid:x\nreceipt:r\n\n\x00",
         Error("NACK is not part of STOMP 1.0", receipt="r"), connect=False),
    Case("token-refresh-without-jwt", "default", "tcp",
         b"SEND\ndestination:/control/token\nreceipt:r\n\nabc\x00",
         Error("token refresh needs JWT authentication ([auth] jwt-secret or jwt-public-key-file)", receipt="r")),
    Case("x-max-rate-not-a-number", "default", "tcp",
         b"SUBSCRIBE\nid:1\ndestination:/topic/a\nx-max-rate:abc\nreceipt:r\n\n\x00",
         Error("invalid x-max-rate 'abc': expected updates per second: 0 (unlimited) or a number from 0.001 to 1000",
               receipt="r")),
    # ---- bad escapes -----------------------------------------------------------------------------
    Case("escape-tab", "default", "tcp", b"SEND\ndestination:/topic/a\nx-h:a\\tb\n\nx\x00",
         Error("Undefined escape sequence '\\t' in a header")),
    Case("escape-trailing-backslash", "default", "tcp", b"SEND\ndestination:/topic/a\nx-h:ab\\\n\nx\x00",
         Error("Undefined escape sequence '\\' in a header")),
    Case("escape-hex", "default", "tcp", b"SEND\ndestination:/topic/a\nx-h:\\x41\n\nx\x00",
         Error("Undefined escape sequence '\\x' in a header")),
    Case("escape-in-header-name", "default", "tcp", b"SEND\ndestination:/topic/a\nx\\q:1\n\nx\x00",
         Error("Undefined escape sequence '\\q' in a header")),
    Case("escape-cr-in-stomp-1.1", "default", "tcp",
         b"CONNECT\naccept-version:1.1\nhost:x\n\n\x00SEND\ndestination:/topic/a\nx:a\\rb\nreceipt:r\n\nx\x00",
         Error("Undefined escape sequence '\\r' in a header", receipt="r"), connect=False),
    Case("no-escapes-in-stomp-1.0", "default", "tcp",
         b"CONNECT\naccept-version:1.0\nhost:x\n\n\x00SEND\ndestination:/topic/a\nx:a\\tb\nreceipt:r\n\nx\x00",
         Receipt("r"), connect=False),
    # ---- invalid UTF-8 ----------------------------------------------------------------------------
    Case("utf8-invalid-header", "default", "tcp", b"SEND\ndestination:/topic/a\nx-h:\xff\xfe\n\nx\x00",
         Error("Command or header is not valid UTF-8")),
    Case("utf8-overlong", "default", "tcp", b"SEND\ndestination:/topic/a\nx-h:\xc0\xaf\n\nx\x00",
         Error("Command or header is not valid UTF-8")),
    Case("utf8-surrogate", "default", "tcp", b"SEND\ndestination:/topic/a\nx-h:\xed\xa0\x80\n\nx\x00",
         Error("Command or header is not valid UTF-8")),
    Case("utf8-truncated-destination", "default", "tcp", b"SEND\ndestination:/topic/\xe2\x82\n\nx\x00",
         Error("Command or header is not valid UTF-8")),
    Case("utf8-invalid-command", "default", "tcp", b"SE\xffND\ndestination:/topic/a\n\nx\x00",
         Error("Unknown command 'SE\\xffND'")),
    Case("utf8-invalid-body-is-bytes", "default", "tcp", b"SEND\ndestination:/topic/a\nreceipt:u\n\n\xff\xfe\x00",
         Receipt("u")),
    # ---- control characters echoed into ERROR messages ---------------------------------------------
    Case("nul-in-destination", "default", "tcp", b"SEND\ndestination:/topic/a\x00\nreceipt:r\n\nx\x00",
         Error("'/topic/a", receipt="r", prefix=True)),
    Case("escape-sequence-in-destination", "default", "tcp",
         b"SEND\ndestination:/nope/\x1b[31mred\nreceipt:r\n\nx\x00",
         Error("unknown destination '/nope/", receipt="r", prefix=True)),
    Case("nul-in-subscription-id", "default", "tcp",
         b"SUBSCRIBE\nid:\x00\ndestination:/topic/a\n\n\x00SUBSCRIBE\nid:\x00\ndestination:/topic/b\nreceipt:r\n\n\x00",
         Error("subscription id '", receipt="r", prefix=True)),
    Case("nul-in-transaction-id", "default", "tcp", b"COMMIT\ntransaction:a\x00b\nreceipt:r\n\n\x00",
         Error("unknown transaction 'a", receipt="r", prefix=True)),
    # ---- STOMP over WebSocket ------------------------------------------------------------------------
    Case("unknown-command", "default", "ws", T(b"FROBNICATE\nreceipt:z\n\n\x00"),
         Error("Unknown command 'FROBNICATE'", receipt="z")),
    Case("send-before-connect", "default", "ws", T(b"SEND\ndestination:/topic/a\nreceipt:pre\n\nx\x00"),
         Error("expected CONNECT or STOMP, got SEND", receipt="pre"), connect=False),
    Case("utf8-invalid-header-binary", "default", "ws", ws_frame(0x2, b"SEND\ndestination:/topic/a\nx:\xff\n\nx\x00"),
         Error("Command or header is not valid UTF-8")),
    Case("utf8-invalid-body-binary", "default", "ws",
         ws_frame(0x2, b"SEND\ndestination:/topic/x\nreceipt:b\n\nbad\xc3\x28\x00"), Receipt("b")),
    Case("stomp-frame-across-messages", "default", "ws",
         T(b"SEND\ndestination:/topic/x\nreceipt:a\n\n1") + T(b"\x00"), Receipt("a")),
    # ---- WebSocket protocol violations ---------------------------------------------------------------
    Case("unmasked-frame", "default", "ws", ws_frame(0x1, b"SEND\ndestination:/topic/x\n\nhi\x00", mask=False),
         WsClose(1002)),
    Case("reserved-opcode-3", "default", "ws", ws_frame(0x3, b"hello"), WsClose(1002)),
    Case("reserved-control-opcode-b", "default", "ws", ws_frame(0xB, b""), WsClose(1002)),
    Case("rsv2-bit", "default", "ws", bytes([0xA1]) + ws_frame(0x1, b"hi")[1:], WsClose(1002)),
    Case("rsv3-bit", "default", "ws", bytes([0x91]) + ws_frame(0x1, b"hi")[1:], WsClose(1002)),
    Case("fragmented-ping", "default", "ws", ws_frame(0x9, b"p", fin=False), WsClose(1002)),
    Case("continuation-without-start", "default", "ws", ws_frame(0x0, b"orphan"), WsClose(1002)),
    Case("control-frame-126-bytes", "default", "ws", ws_frame(0x9, b"x" * 126), WsClose(1002)),
    Case("new-message-inside-fragmented", "default", "ws",
         ws_frame(0x1, b"SEND\n", fin=False) + ws_frame(0x1, b"x"), WsClose(1002)),
    Case("close-code-999", "default", "ws", ws_frame(0x8, struct.pack("!H", 999)), WsClose(1002)),
    Case("close-code-1005", "default", "ws", ws_frame(0x8, struct.pack("!H", 1005)), WsClose(1002)),
    Case("close-code-5000", "default", "ws", ws_frame(0x8, struct.pack("!H", 5000)), WsClose(1002)),
    Case("close-payload-one-byte", "default", "ws", ws_frame(0x8, b"\x03"), WsClose(1002)),
    Case("close-reason-invalid-utf8", "default", "ws", ws_frame(0x8, struct.pack("!H", 1000) + b"\xff"),
         WsClose(1007)),
    Case("length-64bit-msb-set", "default", "ws", bytes([0x81, 0xFF]) + struct.pack("!Q", 1 << 63) + b"abcd",
         WsClose(1002)),
    Case("length-1-tib", "default", "ws", bytes([0x81, 0xFF]) + struct.pack("!Q", 1 << 40) + b"abcd", WsClose(1009)),
    Case("message-over-max-message-size", "default", "ws",
         T(b"SEND\ndestination:/topic/x\ncontent-length:5\n\nhello\x00" + b"\n" * DEFAULT_MAX_MESSAGE), WsClose(1009)),
    Case("utf8-invalid-text", "default", "ws", T(b"SEND\ndestination:/topic/x\n\nbad \xc3\x28 utf8\x00"),
         WsClose(1007)),
    Case("utf8-invalid-across-fragments", "default", "ws",
         ws_frame(0x1, b"SEND\ndestination:/topic/x\n\n", fin=False) + ws_frame(0x0, b"ok ", fin=False)
         + ws_frame(0x0, b"\xed\xa0\x80\x00"), WsClose(1007)),
    Case("utf8-valid-split-across-fragments", "default", "ws",
         ws_frame(0x1, b"SEND\ndestination:/topic/x\nreceipt:s\n\n\xe2\x82", fin=False) + ws_frame(0x0, b"\xac\x00"),
         Receipt("s")),
    Case("rsv1-without-deflate", "default", "ws", Z(b"SEND\ndestination:/topic/x\n\nhi\x00"), WsClose(1002)),
    Case("rsv1-after-declined-offer", "default", "ws", Z(b"SEND\ndestination:/topic/x\n\nhi\x00"), WsClose(1002),
         extensions="permessage-deflate; server_max_window_bits=99"),
    # ---- deflate bombs and bad compressed data ---------------------------------------------------------
    Case("deflate-bomb-4.7MB", "default", "ws", ws_frame(0x1, BOMB_5M, rsv1=True), WsClose(1009), extensions=PMD),
    Case("deflate-bomb-256MiB", "default", "ws", ws_frame(0x1, BOMB_256M, rsv1=True), WsClose(1009),
         extensions=PMD),
    Case("deflate-bomb-binary", "default", "ws", ws_frame(0x2, BOMB_5M, rsv1=True), WsClose(1009), extensions=PMD),
    Case("deflate-bomb-fragmented", "default", "ws", _fragments(BOMB_256M, 64, rsv1=True), WsClose(1009),
         extensions=PMD),
    Case("deflate-garbage", "default", "ws", ws_frame(0x1, b"\xff\xff\xff\xff garbage", rsv1=True), WsClose(1007),
         extensions=PMD),
    Case("deflate-invalid-utf8", "default", "ws", Z(b"SEND\ndestination:/topic/x\n\n\xff\xfe\x00"), WsClose(1007),
         extensions=PMD),
    Case("deflate-rsv1-on-ping", "default", "ws", ws_frame(0x9, b"", rsv1=True), WsClose(1002), extensions=PMD),
    Case("deflate-rsv1-on-continuation", "default", "ws",
         ws_frame(0x1, deflate_raw(b"SEND\ndest"), rsv1=True, fin=False) + ws_frame(0x0, b"abc", rsv1=True),
         WsClose(1002), extensions=PMD),
    Case("deflate-stomp-error", "default", "ws", Z(b"FROBNICATE\nreceipt:z\n\n\x00"),
         Error("Unknown command 'FROBNICATE'", receipt="z"), extensions=PMD),
    # ---- floods on the default server ----------------------------------------------------------------
    Case("fragment-flood-20k", "default", "ws",
         _one_byte_fragments(b"SEND\ndestination:/topic/x\nreceipt:frag\n\n" + b"a" * 20000 + b"\x00"),
         Receipt("frag"), timeout=15),
    Case("ping-flood-20k", "default", "ws",
         ws_frame(0x9, b"p") * 20000 + T(b"SEND\ndestination:/topic/x\nreceipt:pf\n\nx\x00"), Receipt("pf"),
         timeout=15),
    # ---- bad handshakes and HTTP requests ----------------------------------------------------------------
    Case("handshake-missing-key", "default", "http", ws_handshake_request("/ws", key=None),
         Http(400, "missing Sec-WebSocket-Key")),
    Case("handshake-short-key", "default", "http", ws_handshake_request("/ws", key="abc"),
         Http(400, "Sec-WebSocket-Key must be base64 of 16 bytes")),
    Case("handshake-key-not-base64", "default", "http", ws_handshake_request("/ws", key="!" * 22 + "=="),
         Http(400, "Sec-WebSocket-Key must be base64 of 16 bytes")),
    Case("handshake-two-keys", "default", "http", ws_handshake_request("/ws", extra=f"Sec-WebSocket-Key: {KEY}\r\n"),
         Http(400, "more than one Sec-WebSocket-Key")),
    Case("handshake-version-8", "default", "http", ws_handshake_request("/ws", version="8"),
         Http(426, "unsupported Sec-WebSocket-Version")),
    Case("handshake-no-version", "default", "http", ws_handshake_request("/ws", version=None),
         Http(426, "missing Sec-WebSocket-Version")),
    Case("handshake-post", "default", "http", ws_handshake_request("/ws").replace(b"GET", b"POST", 1),
         Http(400, "method must be GET")),
    Case("handshake-no-upgrade-header", "default", "http",
         _raw_request(["GET /ws HTTP/1.1", "Host: x", "Connection: Upgrade", f"Sec-WebSocket-Key: {KEY}",
                       "Sec-WebSocket-Version: 13"]), Http(400, "Upgrade header must contain websocket")),
    Case("handshake-upgrade-h2c", "default", "http",
         ws_handshake_request("/ws").replace(b"Upgrade: websocket", b"Upgrade: h2c"),
         Http(400, "Upgrade header must contain websocket")),
    Case("handshake-no-connection-header", "default", "http",
         _raw_request(["GET /ws HTTP/1.1", "Host: x", "Upgrade: websocket", f"Sec-WebSocket-Key: {KEY}",
                       "Sec-WebSocket-Version: 13"]), Http(400, "Connection header must contain upgrade")),
    Case("handshake-http-1.0", "default", "http", ws_handshake_request("/ws").replace(b"HTTP/1.1", b"HTTP/1.0"),
         Http(400, "HTTP/1.1 or higher required")),
    Case("handshake-wrong-path", "default", "http", ws_handshake_request("/nope"), Http(404, "not found")),
    Case("http-path-traversal", "default", "http", _raw_request(["GET /../../etc/passwd HTTP/1.1", "Host: x"]),
         Http(404, "not found")),
    Case("http-post-healthz", "default", "http",
         _raw_request(["POST /healthz HTTP/1.1", "Host: x", "Content-Length: 3"], b"abc"),
         Http(405, "method not allowed")),
    Case("http-tls-client-hello", "default", "http", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
         Http(400, "")),
    Case("http-100k-header", "default", "http",
         _raw_request(["GET /ws HTTP/1.1", "Host: x", "X-Big: " + "a" * 100_000]), Http(400, "")),
    Case("http-bad-chunk", "default", "http",
         _raw_request(["GET /healthz HTTP/1.1", "Host: x", "Transfer-Encoding: chunked"], b"zz\r\n"), Http(400, "")),
    # ---- oversized headers and bodies (limits server) --------------------------------------------------
    Case("header-line-too-long", "limits", "tcp", b"SEND\ndestination:/topic/a\nx-h:" + b"a" * 300 + b"\n\nx\x00",
         Error("Header line longer than 256 bytes")),
    Case("header-line-at-limit", "limits", "tcp",
         b"SEND\ndestination:/topic/a\nreceipt:r\nx-h:" + b"a" * 252 + b"\n\nx\x00", Receipt("r")),
    Case("header-line-one-over-limit", "limits", "tcp",
         b"SEND\ndestination:/topic/a\nreceipt:r\nx-h:" + b"a" * 253 + b"\n\nx\x00",
         Error("Header line longer than 256 bytes", receipt="r")),
    Case("header-line-too-long-in-connect", "limits", "tcp",
         b"CONNECT\naccept-version:1.2\nhost:" + b"a" * 300 + b"\n\n\x00",
         Error("Header line longer than 256 bytes"), connect=False),
    Case("header-line-without-end", "limits", "tcp", b"SEND\ndestination:/topic/a\nx-h:" + b"a" * 5000,
         Error("Header line longer than 256 bytes")),
    Case("too-many-headers", "limits", "tcp",
         b"SEND\ndestination:/topic/a\n" + b"".join(b"x-%d:v\n" % i for i in range(8)) + b"\nx\x00",
         Error("More than 8 headers in a frame")),
    Case("headers-at-limit", "limits", "tcp",
         b"SEND\ndestination:/topic/a\nreceipt:r\n" + b"".join(b"x-%d:v\n" % i for i in range(6)) + b"\nx\x00",
         Receipt("r")),
    Case("command-line-too-long", "limits", "tcp", b"A" * 5000 + b"\n\n\x00",
         Error("Command line longer than 32 bytes")),
    Case("body-too-large-content-length", "limits", "tcp",
         b"SEND\ndestination:/topic/a\ncontent-length:1025\n\n" + b"a" * 1025 + b"\x00",
         Error("Body larger than 1024 bytes")),
    Case("body-at-limit", "limits", "tcp",
         b"SEND\ndestination:/topic/a\nreceipt:r\ncontent-length:1024\n\n" + b"a" * 1024 + b"\x00", Receipt("r")),
    Case("body-too-large-no-content-length", "limits", "tcp",
         b"SEND\ndestination:/topic/a\n\n" + b"a" * 1025 + b"\x00", Error("Body larger than 1024 bytes")),
    Case("body-too-large-never-ends", "limits", "tcp", b"SEND\ndestination:/topic/a\n\n" + b"a" * 100_000,
         Error("Body larger than 1024 bytes")),
    Case("content-length-declared-too-large", "limits", "tcp",
         b"SEND\ndestination:/topic/a\ncontent-length:2000\n\n", Error("Body larger than 1024 bytes")),
    Case("presence-metadata-too-large", "limits", "tcp",
         b"SUBSCRIBE\nid:1\ndestination:/room/r1\nx-presence-a:" + b"a" * 200 + b"\nreceipt:r\n\n\x00",
         Error("presence metadata (x-presence-* headers) of 201 bytes exceeds the limit of 128 "
               "(presence-max-meta-bytes)", receipt="r")),
    Case("ws-body-too-large", "limits", "ws",
         T(b"SEND\ndestination:/topic/x\nreceipt:r\n\n" + b"a" * 2000 + b"\x00"),
         Error("Body larger than 1024 bytes", receipt="r")),
    Case("ws-header-too-long", "limits", "ws",
         T(b"SEND\ndestination:/topic/x\nreceipt:r\nx-h:" + b"a" * 300 + b"\n\n\x00"),
         Error("Header line longer than 256 bytes", receipt="r")),
    Case("ws-message-over-max-message-size", "limits", "ws",
         T(b"SEND\ndestination:/topic/x\n\n" + b"a" * 5000 + b"\x00"), WsClose(1009)),
    Case("ws-fragments-over-max-message-size", "limits", "ws",
         _fragments(b"SEND\ndestination:/topic/x\n\n" + b"a" * 5000 + b"\x00", 5), WsClose(1009)),
    Case("ws-deflate-bomb-small-limit", "limits", "ws", ws_frame(0x1, BOMB_SMALL, rsv1=True), WsClose(1009),
         extensions=PMD),
    Case("no-connect-in-time", "limits", "tcp", b"", Error("no CONNECT frame within 500 ms"), connect=False),
    Case("ws-no-connect-in-time", "limits", "ws", b"", Error("no CONNECT frame within 500 ms"), connect=False),
    # ---- floods (limits server) --------------------------------------------------------------------------
    Case("subscription-flood", "limits", "tcp",
         b"".join(b"SUBSCRIBE\nid:%d\ndestination:/topic/a%d\n\n\x00" % (i, i) for i in range(5)),
         Error("too many subscriptions on this connection (limit 4)")),
    Case("transaction-flood", "limits", "tcp", b"".join(b"BEGIN\ntransaction:t%d\n\n\x00" % i for i in range(17)),
         Error("too many open transactions (limit 16)")),
    Case("frames-in-one-transaction", "limits", "tcp",
         b"BEGIN\ntransaction:t\n\n\x00" + b"SEND\ndestination:/topic/a\ntransaction:t\n\nx\x00" * 1025,
         Error("too many frames in transaction 't' (limit 1024)")),
    Case("heart-beat-eol-flood", "limits", "tcp", b"\n" * 200_000 + b"SEND\ndestination:/topic/a\nreceipt:r\n\nx\x00",
         Receipt("r")),
    # ---- wrong credentials (auth server) ------------------------------------------------------------------
    Case("wrong-passcode", "auth", "tcp", connect_frame(login="alice", passcode="wrong-" + ALICE_PW),
         Error(AUTH_FAILED), connect=False, secret="wrong-" + ALICE_PW),
    Case("unknown-user", "auth", "tcp", connect_frame(login="mallory", passcode="mallory-secret-pw"),
         Error(AUTH_FAILED), connect=False, secret="mallory-secret-pw"),
    Case("missing-login", "auth", "tcp", connect_frame(), Error(AUTH_FAILED), connect=False),
    Case("missing-passcode", "auth", "tcp", connect_frame(login="alice"), Error(AUTH_FAILED), connect=False),
    Case("empty-passcode", "auth", "tcp", connect_frame(login="alice", passcode=""), Error(AUTH_FAILED),
         connect=False),
    Case("login-wrong-case", "auth", "tcp", connect_frame(login="Alice", passcode=ALICE_PW), Error(AUTH_FAILED),
         connect=False, secret=ALICE_PW),
    Case("another-users-passcode", "auth", "tcp", connect_frame(login="bob", passcode=ALICE_PW), Error(AUTH_FAILED),
         connect=False, secret=ALICE_PW),
    Case("basic-authorization-header", "auth", "tcp",
         connect_frame(authorization="Basic YWxpY2U6" + "c2VjcmV0LXZhbHVl"), Error(AUTH_FAILED), connect=False,
         secret="YWxpY2U6c2VjcmV0LXZhbHVl"),
    Case("wrong-passcode", "auth", "ws", T(connect_frame(login="alice", passcode="wrong-" + ALICE_PW)),
         Error(AUTH_FAILED), connect=False, secret="wrong-" + ALICE_PW),
    # ---- expired and bad tokens ----------------------------------------------------------------------------
    Case("jwt-expired", "auth", "tcp", lambda: connect_frame(passcode=token({"sub": "carol", "exp": now() - 60})),
         Error(AUTH_FAILED), connect=False),
    Case("jwt-not-yet-valid", "auth", "tcp",
         lambda: connect_frame(passcode=token({"sub": "carol", "exp": now() + 600, "nbf": now() + 300})),
         Error(AUTH_FAILED), connect=False),
    Case("jwt-bad-signature", "auth", "tcp",
         lambda: connect_frame(passcode=token({"sub": "carol", "exp": now() + 600}, OTHER_SECRET)),
         Error(AUTH_FAILED), connect=False),
    Case("jwt-alg-none", "auth", "tcp",
         lambda: connect_frame(passcode=jwt.encode({"sub": "carol", "exp": now() + 600}, None, algorithm="none")),
         Error(AUTH_FAILED), connect=False),
    Case("jwt-hs384", "auth", "tcp",
         lambda: connect_frame(passcode=token({"sub": "carol", "exp": now() + 600}, JWT_SECRET, "HS384")),
         Error(AUTH_FAILED), connect=False),
    Case("jwt-no-subject", "auth", "tcp", lambda: connect_frame(passcode=token({"exp": now() + 600})),
         Error(AUTH_FAILED), connect=False),
    Case("jwt-login-mismatch", "auth", "tcp",
         lambda: connect_frame(login="bob", passcode=token({"sub": "carol", "exp": now() + 600})),
         Error(AUTH_FAILED), connect=False),
    Case("jwt-garbage-signature", "auth", "tcp",
         connect_frame(passcode="eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.garbage!!"), Error(AUTH_FAILED),
         connect=False),
    Case("bearer-expired", "auth", "tcp",
         lambda: connect_frame(authorization="Bearer " + token({"sub": "carol", "exp": now() - 60})),
         Error(AUTH_FAILED), connect=False),
    Case("bearer-not-a-jwt", "auth", "tcp", connect_frame(authorization="Bearer abc.def.ghi"), Error(AUTH_FAILED),
         connect=False),
    Case("jwt-exp-as-string-in-the-past", "auth", "tcp",
         lambda: connect_frame(passcode=token({"sub": "carol", "exp": str(now() - 3600)})), Error(AUTH_FAILED),
         connect=False, timeout=2),
    Case("jwt-expired", "auth", "ws", lambda: T(connect_frame(passcode=token({"sub": "carol", "exp": now() - 60}))),
         Error(AUTH_FAILED), connect=False),
    Case("session-outlives-token", "auth", "tcp",
         lambda: connect_frame(passcode=token({"sub": "carol", "exp": now() + 2})),
         Error("token expired: refresh it with a SEND to /control/token before it expires"), connect=False),
    Case("session-outlives-token", "auth", "ws",
         lambda: T(connect_frame(passcode=token({"sub": "carol", "exp": now() + 2}))),
         Error("token expired: refresh it with a SEND to /control/token before it expires"), connect=False),
    Case("refresh-for-another-user", "auth", "tcp",
         lambda: connect_frame(passcode=token({"sub": "carol", "exp": now() + 600}))
         + encode_frame("SEND", {"destination": "/control/token", "receipt": "r"},
                        token({"sub": "dave", "exp": now() + 600})),
         Error("token refresh refused: the token is for another user", receipt="r"), connect=False),
    Case("refresh-with-expired-token", "auth", "tcp",
         lambda: connect_frame(passcode=token({"sub": "carol", "exp": now() + 600}))
         + encode_frame("SEND", {"destination": "/control/token", "receipt": "r"},
                        token({"sub": "carol", "exp": now() - 60})),
         Error("token refresh refused: token expired", receipt="r"), connect=False),
    Case("refresh-with-garbage", "auth", "tcp",
         lambda: connect_frame(passcode=token({"sub": "carol", "exp": now() + 600}))
         + encode_frame("SEND", {"destination": "/control/token", "receipt": "r"}, "not a token"),
         Error("token refresh refused: malformed token", receipt="r"), connect=False),
    Case("refresh-with-bad-signature", "auth", "tcp",
         lambda: connect_frame(passcode=token({"sub": "carol", "exp": now() + 600}))
         + encode_frame("SEND", {"destination": "/control/token", "receipt": "r"},
                        token({"sub": "carol", "exp": now() + 600}, OTHER_SECRET)),
         Error("token refresh refused: bad signature", receipt="r"), connect=False),
    Case("refresh-inside-transaction", "auth", "tcp",
         lambda: connect_frame(passcode=token({"sub": "carol", "exp": now() + 600}))
         + encode_frame("BEGIN", {"transaction": "t"})
         + encode_frame("SEND", {"destination": "/control/token", "transaction": "t", "receipt": "r"},
                        token({"sub": "carol", "exp": now() + 600})),
         Error("a token refresh cannot be part of a transaction", receipt="r"), connect=False),
    # ---- forbidden destinations ----------------------------------------------------------------------
    Case("subscribe-forbidden", "auth", "tcp", encode_frame("SUBSCRIBE", {"id": "1", "destination": "/topic/secret.x",
                                                                           "receipt": "r"}),
         Error("access denied: 'bob' may not subscribe to '/topic/secret.x'", receipt="r")),
    Case("send-forbidden", "auth", "tcp", encode_frame("SEND", {"destination": "/topic/secret.x", "receipt": "r"}, "x"),
         Error("access denied: 'bob' may not send to '/topic/secret.x'", receipt="r")),
    Case("subscribe-wildcard-reaching-forbidden", "auth", "tcp",
         encode_frame("SUBSCRIBE", {"id": "1", "destination": "/topic/#", "receipt": "r"}),
         Error("access denied: 'bob' may not subscribe to '/topic/#'", receipt="r")),
    Case("subscribe-no-rule", "auth", "tcp",
         encode_frame("SUBSCRIBE", {"id": "1", "destination": "/topic/other", "receipt": "r"}),
         Error("access denied: 'bob' may not subscribe to '/topic/other'", receipt="r")),
    Case("send-named-users-only", "auth", "tcp",
         encode_frame("SEND", {"destination": "/topic/feed.x", "receipt": "r"}, "x"),
         Error("access denied: 'bob' may not send to '/topic/feed.x'", receipt="r")),
    Case("send-to-another-users-inbox", "auth", "tcp",
         encode_frame("SEND", {"destination": "/user/alice/inbox", "receipt": "r"}, "x"),
         Error("access denied: 'bob' may not send to '/user/alice/inbox'", receipt="r")),
    Case("forbidden-send-in-transaction", "auth", "tcp",
         encode_frame("BEGIN", {"transaction": "t"})
         + encode_frame("SEND", {"destination": "/topic/public.a", "transaction": "t"}, "a")
         + encode_frame("SEND", {"destination": "/topic/secret.a", "transaction": "t"}, "b")
         + encode_frame("COMMIT", {"transaction": "t", "receipt": "c"}),
         Error("access denied: 'bob' may not send to '/topic/secret.a'", receipt="c")),
    Case("jwt-without-role-subscribes-secret", "auth", "tcp",
         lambda: connect_frame(passcode=token({"sub": "carol", "exp": now() + 600, "roles": ["user"]}))
         + encode_frame("SUBSCRIBE", {"id": "1", "destination": "/topic/secret.#", "receipt": "r"}),
         Error("access denied: 'carol' may not subscribe to '/topic/secret.#'", receipt="r"), connect=False),
    Case("subscribe-forbidden", "auth", "ws",
         T(encode_frame("SUBSCRIBE", {"id": "1", "destination": "/topic/secret.x", "receipt": "r"})),
         Error("access denied: 'bob' may not subscribe to '/topic/secret.x'", receipt="r")),
]


# --------------------------------------------------------------------------------------------------
# Running a case
# --------------------------------------------------------------------------------------------------


@dataclass
class Observed:
    frames: list = field(default_factory=list)
    closed: bool = False  # end of stream
    close_code: int | None = None
    received: bytes = b""


def _observe(client, expect, timeout: float) -> Observed:
    """Reads until the connection ends, or (for an accepted input) the RECEIPT arrives, or the deadline."""
    obs = Observed()
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            f = client.recv_frame(remaining)
        except Closed:
            obs.closed = True
            break
        except TimeoutError:
            break
        obs.frames.append(f)
        if isinstance(expect, Receipt) and f.command in ("RECEIPT", "ERROR"):
            break
    obs.close_code = client.close_code
    obs.received = bytes(client.received)
    return obs


def _check_error(case: Case, obs: Observed) -> None:
    exp: Error = case.expect
    errors = [f for f in obs.frames if f.command == "ERROR"]
    assert errors, f"no ERROR frame; saw {obs.frames!r} (closed={obs.closed}, close code {obs.close_code})"
    assert len(errors) == 1 and obs.frames[-1] is errors[0], f"one ERROR, last: {obs.frames!r}"
    assert all(f.command in ("CONNECTED", "RECEIPT", "MESSAGE") for f in obs.frames[:-1]), obs.frames
    error = errors[0]
    message = error.headers.get("message")
    assert message is not None, f"ERROR without message header: {error!r}"
    if exp.prefix:
        assert message.startswith(exp.message), f"message {message!r} does not start with {exp.message!r}"
    else:
        assert message == exp.message, f"message {message!r} != {exp.message!r}"
    assert error.headers.get("receipt-id") == exp.receipt, f"receipt-id of {error!r}, expected {exp.receipt!r}"
    if exp.receipt is not None:
        assert not any(f.command == "RECEIPT" and f.headers.get("receipt-id") == exp.receipt for f in obs.frames), \
            "a RECEIPT for the failed frame"
    assert obs.closed == exp.closes, "the connection stayed open after the ERROR"
    if case.transport == "ws":
        assert obs.close_code == exp.ws_close, f"WebSocket close code {obs.close_code}, expected {exp.ws_close}"
    bad = [c for c in message if ord(c) < 0x20 or ord(c) == 0x7F]
    assert not bad, f"the ERROR message carries raw control characters {bad!r}: {message!r}"


def _check_receipt(case: Case, obs: Observed, client) -> None:
    exp: Receipt = case.expect
    assert not any(f.command == "ERROR" for f in obs.frames), f"ERROR: {obs.frames!r}"
    assert any(f.command == "RECEIPT" and f.headers.get("receipt-id") == exp.receipt_id for f in obs.frames), \
        f"no RECEIPT {exp.receipt_id!r}: {obs.frames!r} (closed={obs.closed})"
    assert obs.closed == exp.closes, "the connection closed after an accepted input"
    # still usable
    client.send_frame("SEND", {"destination": "/topic/" + uid(), "receipt": "after"}, "after")
    deadline = time.monotonic() + 5
    while True:
        f = client.recv_frame(max(0.001, deadline - time.monotonic()))
        if f.command in ("RECEIPT", "ERROR"):
            break
    assert f.command == "RECEIPT" and f.headers.get("receipt-id") == "after", f


def _check_ws_close(case: Case, obs: Observed) -> None:
    exp: WsClose = case.expect
    assert obs.close_code == exp.code, f"close code {obs.close_code}, expected {exp.code}; frames {obs.frames!r}"
    assert not obs.frames, f"STOMP frames before the close: {obs.frames!r}"
    assert obs.closed == exp.closes, "the TCP connection stayed open after the close frame"


def _run_http(case: Case, env: Env) -> None:
    exp: Http = case.expect
    request = case.send() if callable(case.send) else case.send
    status, headers, rest, sock = http_request(env.srv.http_port, request)
    try:
        assert status == exp.status, f"status {status}, expected {exp.status}: {headers} {rest!r}"
        length = int(headers.get("content-length", "0"))
        body = rest
        sock.settimeout(2)
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
        if exp.body is not None:
            assert body.decode("utf-8", "replace").startswith(exp.body), f"body {body!r}, expected {exp.body!r}"
        # serving check before the (possibly failing) close check
        assert_serving(env, "ws")
        if exp.closes:
            closed = False
            deadline = time.monotonic() + 1.5
            while time.monotonic() < deadline:
                sock.settimeout(max(0.01, deadline - time.monotonic()))
                try:
                    if not sock.recv(65536):
                        closed = True
                        break
                except socket.timeout:
                    break
                except (ConnectionResetError, BrokenPipeError):
                    closed = True
                    break
            assert closed, "the server answered 'Connection: close' but kept the connection open"
    finally:
        sock.close()


def _run_stomp(case: Case, env: Env) -> None:
    client = open_client(env, case.transport, case.extensions)
    writer = None
    try:
        if case.extensions == PMD:
            assert client.deflate, f"permessage-deflate not negotiated: {client.headers}"
        if case.connect:
            stomp_connect(client, env.creds)
        data = case.send() if callable(case.send) else case.send
        if data:
            writer = send_in_background(client, data, wire=True)
        obs = _observe(client, case.expect, case.timeout)
        if writer:
            writer.join(5)
        # first: the server still serves others
        assert_serving(env, case.transport)
        if case.secret:
            assert case.secret.encode() not in obs.received, "the response carries the secret"
            assert case.secret not in env.srv.output(), "the server's log carries the secret"
        if isinstance(case.expect, Error):
            _check_error(case, obs)
        elif isinstance(case.expect, Receipt):
            _check_receipt(case, obs, client)
        elif isinstance(case.expect, WsClose):
            assert case.transport == "ws"
            _check_ws_close(case, obs)
        else:
            raise AssertionError(f"unknown expectation {case.expect!r}")
    finally:
        client.close()


@pytest.mark.parametrize("case", [c.param() for c in CASES])
def test_bad_input(case: Case, request):
    env: Env = request.getfixturevalue(f"{case.env}_env")
    if case.transport == "http":
        _run_http(case, env)
    else:
        _run_stomp(case, env)


# --------------------------------------------------------------------------------------------------
# Floods that need more than one connection
# --------------------------------------------------------------------------------------------------


def flood_frame_rate(env: Env) -> None:
    """max-frame-rate 1000: 2500 SENDs written at once are all handled (the last RECEIPT comes after the bucket
    refilled, >= 1.2 s), nothing is dropped, and meanwhile another client is served at once."""
    reader = TcpClient(env.srv.stomp_port)
    flooder = TcpClient(env.srv.stomp_port)
    try:
        stomp_connect(reader, {})
        dest = "/topic/" + uid()
        reader.send_frame("SUBSCRIBE", {"id": "s", "destination": dest, "receipt": "s"})
        assert reader.recv_frame().headers.get("receipt-id") == "s"
        stomp_connect(flooder, {})
        started = time.monotonic()
        writer = send_in_background(flooder, b"".join(
            b"SEND\ndestination:%s\nx-seq:%d\n\n\x00" % (dest.encode(), i) for i in range(2500)
        ) + encode_frame("SEND", {"destination": dest, "receipt": "done"}, "end"), wire=True)
        assert_serving(env)
        assert time.monotonic() - started < 1.0, "another client is not slowed by the flood"
        f = flooder.recv_frame(15)
        assert f.command == "RECEIPT" and f.headers.get("receipt-id") == "done", f
        elapsed = time.monotonic() - started
        assert elapsed >= 1.2, f"2500 frames over a 1000/s bucket were handled in {elapsed:.2f} s"
        writer.join(5)
        seqs = []
        deadline = time.monotonic() + 10
        while len(seqs) < 2500 and time.monotonic() < deadline:
            m = reader.recv_frame(max(0.001, deadline - time.monotonic()))
            if "x-seq" in m.headers:
                seqs.append(int(m.headers["x-seq"]))
        assert seqs == list(range(2500)), "every flooded frame delivered, in order"
    finally:
        reader.close()
        flooder.close()


def flood_slow_consumer(env: Env) -> None:
    """A subscriber that never reads while 40 x 512 KiB are published: it gets ERROR 'slow consumer: outbound buffer
    limit exceeded' (past max-pending-bytes, 4 MiB by default) and is closed; the publisher is not held up."""
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.connect(("127.0.0.1", env.srv.stomp_port))
    publisher = TcpClient(env.srv.stomp_port)
    dest = "/topic/" + uid()
    try:
        slow.sendall(encode_frame("CONNECT", {"accept-version": "1.2", "host": "x"})
                     + encode_frame("SUBSCRIBE", {"id": "1", "destination": dest, "receipt": "sub"}))
        buf = b""
        slow.settimeout(5)
        while b"receipt-id:sub" not in buf:
            chunk = slow.recv(4096)
            assert chunk, f"closed before the subscription: {buf!r}"
            buf += chunk
        stomp_connect(publisher, {})
        body = b"z" * (512 * 1024)
        started = time.monotonic()
        for _ in range(40):
            publisher.send_frame("SEND", {"destination": dest}, body)
        f = publisher.receipt_roundtrip(timeout=10)
        assert f.command == "RECEIPT", f
        assert time.monotonic() - started < 10
        assert_serving(env)
        # now read what the slow one was sent: MESSAGEs, then the ERROR, then the end of the stream
        data = b""
        slow.settimeout(10)
        while True:
            try:
                chunk = slow.recv(1 << 20)
            except (ConnectionResetError, BrokenPipeError):
                break
            if not chunk:
                break
            data += chunk
        frames = FrameParser().feed(data)
        assert frames and frames[-1].command == "ERROR", frames[-3:]
        assert frames[-1].headers.get("message") == "slow consumer: outbound buffer limit exceeded", frames[-1]
        assert 0 < sum(f.command == "MESSAGE" for f in frames) < 40
    finally:
        slow.close()
        publisher.close()


def flood_connections_per_address(env: Env) -> None:
    """max-connections-per-ip 4: the 5th TCP connection gets ERROR '... (max-connections-per-ip 4)' and is closed,
    a WebSocket handshake gets 503 with the same text; once they close, others are served again."""
    held = []
    try:
        for _ in range(4):
            c = TcpClient(env.srv.stomp_port)
            stomp_connect(c, {})
            held.append(c)
        refused = TcpClient(env.srv.stomp_port)
        frames = refused.wait_closed(5)
        refused.close()
        assert [f.command for f in frames] == ["ERROR"], frames
        assert frames[0].headers.get("message") == "too many connections from this address (max-connections-per-ip 4)"
        status, headers, body, sock = http_request(env.srv.http_port, ws_handshake_request("/ws"))
        sock.close()
        assert status == 503, (status, headers, body)
        assert body.startswith(b"too many connections from this address (max-connections-per-ip 4)"), body
    finally:
        for c in held:
            c.close()
    assert_serving(env, "ws")


def flood_wrong_logins(env: Env) -> None:
    """100 wrong logins in a row (below failed-login-limit 1000): each gets the same one ERROR, none is slowed to a
    stop, and a right login still works afterwards."""
    started = time.monotonic()
    for i in range(100):
        c = TcpClient(env.srv.stomp_port)
        c.send_frame("CONNECT", {"accept-version": "1.2", "host": "x", "login": "alice", "passcode": f"guess-{i}"})
        frames = c.wait_closed(5)
        c.close()
        assert [f.headers.get("message") for f in frames] == [AUTH_FAILED], frames
    assert time.monotonic() - started < 20
    assert "guess-" not in env.srv.output(), "a tried passcode reached the log"


def flood_failed_login_lockout(env: Env) -> None:
    """failed-login-limit 3: after 3 wrong logins from 127.0.0.1, even the right passcode from there gets 'too many
    failed logins'; 127.0.0.2 (the health check) is not affected."""
    for i in range(3):
        c = TcpClient(env.srv.stomp_port)
        c.send_frame("CONNECT", {"accept-version": "1.2", "host": "x", "login": "bob", "passcode": f"nope-{i}"})
        frames = c.wait_closed(5)
        c.close()
        assert [f.headers.get("message") for f in frames] == [AUTH_FAILED], frames
    c = TcpClient(env.srv.stomp_port)
    c.send_frame("CONNECT", {"accept-version": "1.2", "host": "x", "login": "bob", "passcode": BOB_PW})
    frames = c.wait_closed(5)
    c.close()
    assert [f.headers.get("message") for f in frames] == [
        "authentication failed: too many failed logins from this address; retry later"], frames
    assert BOB_PW not in env.srv.output()


def flood_connect_and_drop(env: Env) -> None:
    """300 connections that open and vanish (half a CONNECT, a bare close, a reset) cost nothing lasting."""
    for i in range(300):
        s = socket.create_connection(("127.0.0.1", env.srv.stomp_port))
        if i % 3 == 0:
            s.sendall(b"CONNECT\naccept-vers")
        elif i % 3 == 1:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST on close
            s.sendall(b"CONNECT\naccept-version:1.2\n\n\x00SEND\ndestination:/topic/x\n\n")
        s.close()


FLOODS = [
    ("frame-rate", "limits", flood_frame_rate),
    ("slow-consumer", "default", flood_slow_consumer),
    ("connections-per-address", "connlimit", flood_connections_per_address),
    ("wrong-logins", "auth", flood_wrong_logins),
    ("failed-login-lockout", "lockout", flood_failed_login_lockout),
    ("connect-and-drop", "default", flood_connect_and_drop),
]


@pytest.mark.parametrize("name,env_name,fn", FLOODS, ids=[f"{e}-{n}" for n, e, _ in FLOODS])
def test_flood(name, env_name, fn, request):
    env: Env = request.getfixturevalue(f"{env_name}_env")
    fn(env)
    assert_serving(env, "tcp")
    assert_serving(env, "ws")


# --------------------------------------------------------------------------------------------------
# Side channels and memory
# --------------------------------------------------------------------------------------------------


def _login_seconds(env: Env, login: str, passcode: str) -> float:
    c = TcpClient(env.srv.stomp_port)
    try:
        started = time.monotonic()
        c.send_frame("CONNECT", {"accept-version": "1.2", "host": "x", "login": login, "passcode": passcode})
        f = c.recv_frame(10)
        assert f.headers.get("message") == AUTH_FAILED, f
        return time.monotonic() - started
    finally:
        c.close()


def test_unknown_user_costs_what_a_wrong_passcode_costs(auth_env):
    _login_seconds(auth_env, "nobody-warmup", "x")  # the decoy is made on first use
    wrong = sorted(_login_seconds(auth_env, "alice", f"wrong-{i}") for i in range(3))[1]
    unknown = sorted(_login_seconds(auth_env, f"nobody-{i}", "x") for i in range(3))[1]
    assert_serving(auth_env)
    assert unknown < wrong * 3 + 0.05, f"unknown user {unknown * 1000:.1f} ms vs wrong passcode {wrong * 1000:.1f} ms"


def _rss_kib(srv: StarlingServer) -> int:
    with open(f"/proc/{srv.proc.pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _bad_round(env: Env) -> None:
    c = TcpClient(env.srv.stomp_port)
    c.send_raw(b"\x01\x02 garbage\n\n\x00")
    c.wait_closed(5)
    c.close()
    ws = WsClient(env.srv.http_port, extensions=PMD)
    ws.send_wire(ws_frame(0x1, BOMB_5M, rsv1=True))
    ws.pump(5)
    assert ws.close_code == 1009
    ws.close()
    ws = WsClient(env.srv.http_port)
    stomp_connect(ws, {})
    ws.send_wire(ws_frame(0x3, b"x"))
    ws.pump(5)
    assert ws.close_code == 1002
    ws.close()


def test_bad_inputs_do_not_grow_memory(default_env):
    """Rounds of garbage frames, deflate bombs and protocol violations: after a warm-up, 200 more rounds grow the
    server's resident memory by less than 16 MiB (a leak of one inflated bomb per round would be 240 MiB)."""
    for _ in range(50):
        _bad_round(default_env)
    before = _rss_kib(default_env.srv)
    for _ in range(200):
        _bad_round(default_env)
    after = _rss_kib(default_env.srv)
    print(f"RSS {before} KiB -> {after} KiB")
    assert_serving(default_env)
    assert after - before < 16 * 1024, f"RSS grew from {before} KiB to {after} KiB"
