"""Shared helpers for the Starling end-to-end tests.

* ``StarlingServer``: starts the binary on port 0 and parses the ports from its ``listening`` log line.
* ``FrameParser`` / ``RawTcpStomp`` / ``RawWsStomp``: a minimal hand-written STOMP client (over a plain
  TCP socket, or over the ``websockets`` library) for the cases stomp.py can't express (bad frames,
  version negotiation, exact bytes, heart-beat timing).
* ``Collector``: a stomp.py listener that records what arrives and lets tests wait for it.
* raw WebSocket helpers (hand-written handshake and frames) for close-code and handshake tests.
"""

from __future__ import annotations

import base64
import os
import re
import signal
import socket
import struct
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest
import stomp
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

REPO = Path(__file__).resolve().parents[2]
DEFAULT_BIN = REPO / ".build" / "debug" / "starling"
STARTUP_TIMEOUT = 30.0


def uid() -> str:
    """A short unique word usable inside a destination (no dots)."""
    return "t" + uuid.uuid4().hex[:12]


def starling_bin() -> str:
    return os.environ.get("STARLING_BIN", str(DEFAULT_BIN))


# --------------------------------------------------------------------------------------------------
# Server process
# --------------------------------------------------------------------------------------------------

_HTTP_RE = re.compile(r"http=\S*?:(\d+)")
_STOMP_RE = re.compile(r"stomp=\S*?:(\d+)")
# The TLS listeners ([tls] in the config file); absent from the line when they are off.
_HTTPS_RE = re.compile(r"\bhttps=\S*?:(\d+)")
_STOMPS_RE = re.compile(r"\bstomps=\S*?:(\d+)")


class ServerStartError(RuntimeError):
    pass


def start_or_fail(srv: "StarlingServer", context: str = "") -> "StarlingServer":
    """Starts `srv`; one that does not start fails the test with its output (``context`` first), not a traceback."""
    try:
        srv.start()
    except ServerStartError as error:
        pytest.fail(f"{context}{error}", pytrace=False)
    return srv


def assert_still_alive(request, fixture: str, what: str = "the server") -> None:
    """For an autouse fixture, after each test: if the test used the server fixture named ``fixture``, that server
    must not have died during it."""
    if fixture in request.fixturenames:
        srv = request.getfixturevalue(fixture)
        assert srv.alive(), f"{what} died during this test:\n{srv.output()}"


class StarlingServer:
    """One running Starling process, started with port 0 for both listeners."""

    def __init__(self, data_dir: Path, extra_args: list[str] | None = None):
        self.binary = starling_bin()
        self.data_dir = Path(data_dir)
        self.extra_args = list(extra_args or [])
        self.proc: subprocess.Popen | None = None
        self.lines: list[str] = []
        # Re-entrant: start() reports a failed start with output() while it holds the condition.
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self.http_port: int | None = None
        self.stomp_port: int | None = None
        self.https_port: int | None = None  # HTTPS + wss:// listener, None when off
        self.stomps_port: int | None = None  # STOMP over TLS listener, None when off
        self.host = "127.0.0.1"

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> "StarlingServer":
        if not os.path.exists(self.binary):
            raise ServerStartError(f"starling binary not found at {self.binary} (set STARLING_BIN)")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            self.binary,
            "--host", "127.0.0.1",
            "--port", "0",
            "--stomp-port", "0",
            "--data-dir", str(self.data_dir),
            "--log-level", "info",
            *self.extra_args,
        ]
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            bufsize=0,
        )
        threading.Thread(target=self._pump, daemon=True).start()
        deadline = time.monotonic() + STARTUP_TIMEOUT
        with self._cond:
            while True:
                for line in self.lines:
                    if "listening" in line:
                        h, s = _HTTP_RE.search(line), _STOMP_RE.search(line)
                        if h:
                            self.http_port = int(h.group(1))
                        if s:
                            self.stomp_port = int(s.group(1))
                        hs, ss = _HTTPS_RE.search(line), _STOMPS_RE.search(line)
                        self.https_port = int(hs.group(1)) if hs else None
                        self.stomps_port = int(ss.group(1)) if ss else None
                if self.http_port and self.stomp_port:
                    break
                if self.proc.poll() is not None:
                    self._cond.wait(0.2)  # let the pump collect the last lines
                    raise ServerStartError(
                        f"starling exited with code {self.proc.returncode} before listening:\n"
                        + self.output()
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self.kill()
                    raise ServerStartError(
                        f"starling did not log a 'listening' line with http= and stomp= ports within "
                        f"{STARTUP_TIMEOUT}s:\n" + self.output()
                    )
                self._cond.wait(min(remaining, 0.2))
        return self

    def _pump(self) -> None:
        assert self.proc and self.proc.stdout
        buf = b""
        while True:
            chunk = self.proc.stdout.read(4096)
            if not chunk:
                break
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                with self._cond:
                    self.lines.append(line.decode("utf-8", "replace"))
                    self._cond.notify_all()
        if buf:
            with self._cond:
                self.lines.append(buf.decode("utf-8", "replace"))
        with self._cond:
            self._cond.notify_all()

    def output(self) -> str:
        with self._lock:
            return "\n".join(self.lines[-200:])

    def line_count(self) -> int:
        with self._lock:
            return len(self.lines)

    def wait_for_line(self, substring: str, start: int = 0, timeout: float = 5.0) -> str:
        """The first output line at index >= ``start`` containing ``substring``; AssertionError after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines[start:]:
                    if substring in line:
                        return line
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no output line containing {substring!r} within {timeout}s; last lines:\n"
                                         + "\n".join(self.lines[-20:]))
                self._cond.wait(min(remaining, 0.2))

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def terminate(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> int | None:
        assert self.proc
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.terminate()
            if self.wait(10) is None:
                self.kill()

    # -- addresses --------------------------------------------------------------------------------
    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.http_port}/ws"

    def url(self, path: str, scheme: str = "ws") -> str:
        return f"{scheme}://127.0.0.1:{self.http_port}{path}"


# --------------------------------------------------------------------------------------------------
# STOMP frames
# --------------------------------------------------------------------------------------------------

_ESCAPES = {b"\\": b"\\\\", b"\n": b"\\n", b"\r": b"\\r", b":": b"\\c"}
_UNESCAPES = {"\\\\": "\\", "\\n": "\n", "\\r": "\r", "\\c": ":"}


def escape_header(s: str) -> bytes:
    out = bytearray()
    for ch in s.encode("utf-8"):
        b = bytes([ch])
        out += _ESCAPES.get(b, b)
    return bytes(out)


def unescape_header(s: str) -> str:
    return re.sub(r"\\[\\ncr]", lambda m: _UNESCAPES[m.group(0)], s)


def encode_frame(command: str, headers=None, body: bytes | str = b"", *, content_length: bool = True,
                 escape: bool = True) -> bytes:
    """Serialize a STOMP frame. ``headers`` is a dict or a list of (name, value) pairs."""
    if isinstance(body, str):
        body = body.encode("utf-8")
    items = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
    if content_length and body and not any(k == "content-length" for k, _ in items):
        items.append(("content-length", str(len(body))))
    do_escape = escape and command not in ("CONNECT", "STOMP", "CONNECTED")
    out = bytearray(command.encode() + b"\n")
    for k, v in items:
        if do_escape:
            out += escape_header(k) + b":" + escape_header(str(v)) + b"\n"
        else:
            out += k.encode("utf-8") + b":" + str(v).encode("utf-8") + b"\n"
    out += b"\n" + body + b"\x00"
    return bytes(out)


class Frame:
    def __init__(self, command: str, header_list: list[tuple[str, str]], body: bytes):
        self.command = command
        self.header_list = header_list
        self.headers: dict[str, str] = {}
        for k, v in header_list:  # STOMP 1.2: the first occurrence of a repeated header wins
            self.headers.setdefault(k, v)
        self.body = body

    def __repr__(self) -> str:
        body = self.body if len(self.body) < 200 else self.body[:200] + b"..."
        return f"Frame({self.command!r}, {self.headers!r}, {body!r})"


class FrameParser:
    """Incremental STOMP frame parser. Counts heart-beats (EOLs between frames) and their times."""

    _HDR_END = re.compile(rb"\r?\n\r?\n")

    def __init__(self, unescape: bool = True):
        self.buf = bytearray()
        self.unescape = unescape
        self.heartbeat_times: list[float] = []

    def feed(self, data: bytes) -> list[Frame]:
        self.buf += data
        frames = []
        while True:
            while self.buf[:1] == b"\n" or self.buf[:2] == b"\r\n":
                n = 1 if self.buf[:1] == b"\n" else 2
                del self.buf[:n]
                self.heartbeat_times.append(time.monotonic())
            if not self.buf:
                break
            if self.buf[:1] == b"\r":
                break  # wait for the rest of a CRLF
            m = self._HDR_END.search(self.buf)
            if not m:
                break
            head = bytes(self.buf[: m.start()]).decode("utf-8", "replace")
            lines = re.split(r"\r?\n", head)
            command = lines[0]
            hl = []
            for line in lines[1:]:
                k, _, v = line.partition(":")
                if self.unescape and command != "CONNECTED":
                    k, v = unescape_header(k), unescape_header(v)
                hl.append((k, v))
            start = m.end()
            clen = None
            for k, v in hl:
                if k == "content-length":
                    try:
                        clen = int(v)
                    except ValueError:
                        clen = None
                    break
            if clen is not None:
                if len(self.buf) < start + clen + 1:
                    break
                body = bytes(self.buf[start: start + clen])
                if self.buf[start + clen] != 0:
                    raise AssertionError(
                        f"frame {command} body of content-length {clen} not followed by NUL: "
                        f"{bytes(self.buf[start:start + clen + 20])!r}")
                del self.buf[: start + clen + 1]
            else:
                nul = self.buf.find(b"\x00", start)
                if nul < 0:
                    break
                body = bytes(self.buf[start:nul])
                del self.buf[: nul + 1]
            frames.append(Frame(command, hl, body))
        return frames


class Closed(Exception):
    """The peer closed the connection."""


class RawStompBase:
    """Common logic of the hand-written STOMP clients (TCP and WebSocket)."""

    def __init__(self):
        self.parser = FrameParser()
        self.pending: list[Frame] = []
        self.closed = False
        self.connected_frame: Frame | None = None

    # transport-specific
    def _read(self, timeout: float) -> bytes | None:  # None: timeout; b"": closed
        raise NotImplementedError

    def send_raw(self, data: bytes) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    # common
    def send_frame(self, command: str, headers=None, body: bytes | str = b"", **kw) -> None:
        self.send_raw(encode_frame(command, headers, body, **kw))

    def recv_frame(self, timeout: float = 5.0) -> Frame:
        """Next frame; raises TimeoutError, or Closed when the connection ends first."""
        deadline = time.monotonic() + timeout
        while not self.pending:
            if self.closed:
                raise Closed()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no STOMP frame within {timeout}s")
            data = self._read(remaining)
            if data is None:
                continue
            if data == b"":
                self.closed = True
                continue
            self.pending.extend(self.parser.feed(data))
        return self.pending.pop(0)

    def recv_until(self, command: str, timeout: float = 5.0) -> Frame:
        """Skip frames until one with ``command``. ERROR frames are always returned."""
        deadline = time.monotonic() + timeout
        while True:
            f = self.recv_frame(max(0.0, deadline - time.monotonic()))
            if f.command == command or f.command == "ERROR":
                return f

    def drain(self, seconds: float) -> list[Frame]:
        """Collect every frame arriving within ``seconds`` (stops early if the peer closes)."""
        out = []
        deadline = time.monotonic() + seconds
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return out
            try:
                out.append(self.recv_frame(remaining))
            except (TimeoutError, Closed):
                return out

    def wait_closed(self, timeout: float = 5.0) -> list[Frame]:
        """Wait until the peer closes the connection; returns the frames seen before. Raises
        TimeoutError if the connection is still open after ``timeout``."""
        frames = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                frames.append(self.recv_frame(max(0.001, deadline - time.monotonic())))
            except Closed:
                return frames
            except TimeoutError:
                raise TimeoutError(
                    f"connection still open after {timeout}s; frames seen: {frames!r}") from None

    def connect(self, version: str | None = "1.2", heart_beat: str | None = None, command: str = "CONNECT",
                extra=None, timeout: float = 5.0) -> Frame:
        headers = []
        if version is not None:
            headers.append(("accept-version", version))
        headers.append(("host", "127.0.0.1"))
        if heart_beat is not None:
            headers.append(("heart-beat", heart_beat))
        headers.extend(extra or [])
        self.send_frame(command, headers)
        f = self.recv_frame(timeout)
        if f.command == "CONNECTED":
            self.connected_frame = f
            v = f.headers.get("version", "1.0")
            self.parser.unescape = v not in ("1.0",)
        return f

    def receipt_roundtrip(self, receipt: str | None = None, timeout: float = 5.0) -> Frame:
        """Send a harmless frame with a receipt (SUBSCRIBE+UNSUBSCRIBE would change state, so use a
        SEND to a private topic) and return the RECEIPT (or whatever arrives first)."""
        receipt = receipt or uid()
        self.send_frame("SEND", [("destination", f"/topic/{uid()}"), ("receipt", receipt)], b"ping")
        return self.recv_until("RECEIPT", timeout)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class RawTcpStomp(RawStompBase):
    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 5.0):
        super().__init__()
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _read(self, timeout: float):
        self.sock.settimeout(max(timeout, 0.001))
        try:
            return self.sock.recv(65536)
        except socket.timeout:
            return None
        except (ConnectionResetError, BrokenPipeError):
            return b""

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class RawWsStomp(RawStompBase):
    """STOMP over the ``websockets`` library (sync client)."""

    def __init__(self, url: str, subprotocols=("v12.stomp",), compression: str | None = None,
                 binary: bool = False, **kw):
        super().__init__()
        self.ws = ws_connect(url, subprotocols=list(subprotocols) if subprotocols else None,
                             compression=compression, open_timeout=5, close_timeout=2, max_size=None,
                             legacy=True, **kw)
        self.binary = binary
        self.close_code: int | None = None
        self.messages_received = 0

    def _read(self, timeout: float):
        try:
            msg = self.ws.recv(timeout=timeout)
        except TimeoutError:
            return None
        except ConnectionClosed as e:
            self.close_code = e.rcvd.code if e.rcvd else None
            return b""
        self.messages_received += 1
        return msg.encode("utf-8") if isinstance(msg, str) else msg

    def send_raw(self, data: bytes) -> None:
        self.ws.send(data, text=not self.binary)

    def close(self) -> None:
        try:
            self.ws.close()
        except Exception:
            pass


# --------------------------------------------------------------------------------------------------
# stomp.py
# --------------------------------------------------------------------------------------------------


class Collector(stomp.ConnectionListener):
    """Records everything a stomp.py connection receives."""

    def __init__(self):
        self.cond = threading.Condition()
        self.connected: list = []
        self.messages: list = []
        self.receipts: list[str] = []
        self.errors: list = []
        self.heartbeats = 0
        self.disconnected = False

    def _add(self, fn):
        with self.cond:
            fn()
            self.cond.notify_all()

    def on_connected(self, frame):
        self._add(lambda: self.connected.append(frame))

    def on_message(self, frame):
        self._add(lambda: self.messages.append(frame))

    def on_receipt(self, frame):
        self._add(lambda: self.receipts.append(frame.headers.get("receipt-id")))

    def on_error(self, frame):
        self._add(lambda: self.errors.append(frame))

    def on_heartbeat(self):
        def inc():
            self.heartbeats += 1
        self._add(inc)

    def on_disconnected(self):
        def mark():
            self.disconnected = True
        self._add(mark)

    def wait_for(self, pred, timeout: float = 5.0, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not pred():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"timed out after {timeout}s waiting for {what}; messages={len(self.messages)} "
                        f"receipts={self.receipts} errors={[(e.headers, e.body) for e in self.errors]} "
                        f"disconnected={self.disconnected}")
                self.cond.wait(remaining)

    def wait_messages(self, n: int, timeout: float = 5.0) -> list:
        self.wait_for(lambda: len(self.messages) >= n, timeout, f"{n} messages")
        return list(self.messages)

    def wait_receipt(self, receipt: str, timeout: float = 5.0) -> None:
        self.wait_for(lambda: receipt in self.receipts, timeout, f"receipt {receipt!r}")


def stomp_connect(conn, collector: Collector, timeout: float = 5.0, **connect_kw):
    conn.set_listener("collector", collector)
    conn.connect(wait=False, **connect_kw)
    collector.wait_for(lambda: collector.connected or collector.errors or collector.disconnected,
                       timeout, "CONNECTED")
    assert collector.connected, f"no CONNECTED: errors={[(e.headers, e.body) for e in collector.errors]}"
    return collector.connected[0]


def stomp_close(conn) -> None:
    try:
        if conn.is_connected():
            conn.disconnect()
    except Exception:
        pass
    try:
        conn.transport.disconnect_socket()
    except Exception:
        pass


def subscribe_sync(conn, collector: Collector, destination: str, sub_id: str, timeout: float = 5.0,
                   **headers) -> None:
    """SUBSCRIBE with a receipt and wait for it, so the subscription is active before publishing."""
    r = "sub-" + uid()
    conn.subscribe(destination=destination, id=sub_id, ack="auto", receipt=r, headers=headers or None)
    collector.wait_receipt(r, timeout)


# --------------------------------------------------------------------------------------------------
# raw WebSocket over a plain socket
# --------------------------------------------------------------------------------------------------


def http_request(port: int, request: bytes, timeout: float = 5.0) -> tuple[int, dict[str, str], bytes, socket.socket]:
    """Send a hand-written HTTP request; return (status, headers (lower-case names), rest, socket).
    ``rest`` is whatever was read after the header block."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(request)
    buf = b""
    deadline = time.monotonic() + timeout
    while b"\r\n\r\n" not in buf:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no complete HTTP response header: {buf!r}")
        chunk = s.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed before complete HTTP response header: {buf!r}")
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    status = int(parts[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        k = k.strip().lower()
        headers[k] = (headers[k] + ", " + v.strip()) if k in headers else v.strip()
    return status, headers, rest, s


def ws_handshake_request(path: str = "/ws", key: str | None = "auto", version: str = "13",
                         protocols: str | None = None, extra: str = "") -> bytes:
    if key == "auto":
        key = base64.b64encode(os.urandom(16)).decode()
    req = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    if key is not None:
        req += f"Sec-WebSocket-Key: {key}\r\n"
    if version is not None:
        req += f"Sec-WebSocket-Version: {version}\r\n"
    if protocols:
        req += f"Sec-WebSocket-Protocol: {protocols}\r\n"
    req += extra + "\r\n"
    return req.encode()


def ws_frame(opcode: int, payload: bytes, *, fin: bool = True, mask: bool = True, rsv1: bool = False) -> bytes:
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        head = struct.pack("!BB", b0, mbit | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        head = struct.pack("!BBQ", b0, mbit | 127, n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    # fast XOR masking via int arithmetic
    reps = (n + 3) // 4
    keyed = (key * reps)[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(keyed, "big")).to_bytes(n, "big") if n else b""
    return head + key + masked


class RawWs:
    """A WebSocket client over a plain socket, for sending frames that libraries refuse to send."""

    def __init__(self, port: int, path: str = "/ws", protocols: str | None = "v12.stomp", timeout: float = 5.0):
        status, headers, rest, sock = http_request(port, ws_handshake_request(path, protocols=protocols),
                                                   timeout)
        assert status == 101, f"handshake failed: {status} {headers}"
        self.sock = sock
        self.buf = bytearray(rest)
        self.headers = headers

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

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
            except ConnectionResetError:
                return False
            if not chunk:
                return False
            self.buf += chunk
        return True

    def recv_frame(self, timeout: float = 5.0):
        """Return (opcode, payload) or None if the TCP connection closed."""
        deadline = time.monotonic() + timeout
        if not self._fill(2, deadline):
            return None
        b0, b1 = self.buf[0], self.buf[1]
        n = b1 & 0x7F
        off = 2
        if n == 126:
            if not self._fill(4, deadline):
                return None
            n = struct.unpack("!H", self.buf[2:4])[0]
            off = 4
        elif n == 127:
            if not self._fill(10, deadline):
                return None
            n = struct.unpack("!Q", self.buf[2:10])[0]
            off = 10
        masked = bool(b1 & 0x80)
        if masked:
            off += 4
        if not self._fill(off + n, deadline):
            return None
        payload = bytes(self.buf[off: off + n])
        del self.buf[: off + n]
        return b0 & 0x0F, payload

    def recv_close(self, timeout: float = 5.0, fail_on_data: bool = False):
        """Read frames until a close frame; return its status code (None if the close frame had no
        code). Raises AssertionError if the TCP connection closed without a close frame, or (with
        ``fail_on_data``) as soon as a data frame arrives instead."""
        deadline = time.monotonic() + timeout
        seen = []
        while True:
            try:
                fr = self.recv_frame(max(0.001, deadline - time.monotonic()))
            except TimeoutError:
                raise AssertionError(f"no WebSocket close frame within {timeout}s; frames received instead: "
                                     f"{seen}") from None
            if fr is None:
                raise AssertionError(f"TCP connection closed without a WebSocket close frame; frames: {seen}")
            op, payload = fr
            if op == 0x8:
                return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
            seen.append((op, payload[:80]))
            if fail_on_data and op in (0x0, 0x1, 0x2):
                raise AssertionError(f"expected a WebSocket close frame, got data frame(s) instead: {seen}")

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
