"""Helpers of the room and presence end-to-end tests (test_rooms.py, test_presence.py): raw clients that keep frame
order, and a stomp.py listener that logs every frame."""

from __future__ import annotations

import json
import threading
import time

import stomp

from e2e_helpers import Closed, Frame, uid

T = 5.0  # default timeout of any single wait


# --------------------------------------------------------------------------------------------------
# helpers (raw clients)
# --------------------------------------------------------------------------------------------------


def connect(make, srv=None, login=None, client_id=None, heart_beat="0,0"):
    """A raw client (from the ``raw_tcp`` / ``raw_ws`` factory) after CONNECT as ``login`` / ``client-id``."""
    c = make(srv)
    extra = []
    if login is not None:
        extra += [("login", login), ("passcode", "secret")]
    if client_id is not None:
        extra.append(("client-id", client_id))
    f = c.connect("1.2", heart_beat=heart_beat, extra=extra)
    assert f.command == "CONNECTED", f
    return c


def _next(c, deadline: float, what: str, seen: list) -> Frame:
    """The next frame before ``deadline``; a timeout or a closed connection fails the test, naming ``what`` and the
    frames ``seen`` meanwhile."""
    try:
        return c.recv_frame(max(0.001, deadline - time.monotonic()))
    except TimeoutError:
        raise AssertionError(f"no {what} in time; frames received instead: {seen}") from None
    except Closed:
        raise AssertionError(f"connection closed while waiting for {what}; frames: {seen}") from None


def rx(c, pred, timeout=T, what="frame") -> Frame:
    """The first frame (already received or arriving within ``timeout``) matching ``pred``. Frames skipped on the
    way are kept, in order, for later calls. An ERROR that ``pred`` does not accept fails the test at once."""
    deadline = time.monotonic() + timeout
    skipped: list[Frame] = []
    try:
        while True:
            f = _next(c, deadline, what, skipped)
            if pred(f):
                return f
            if f.command == "ERROR":
                raise AssertionError(f"ERROR while waiting for {what}: {f!r}")
            skipped.append(f)
    finally:
        c.pending[0:0] = skipped


def until_receipt(c, receipt, timeout=T) -> tuple[list[Frame], Frame]:
    """(every frame before the RECEIPT ``receipt``, that RECEIPT), consuming them."""
    deadline = time.monotonic() + timeout
    before: list[Frame] = []
    while True:
        f = _next(c, deadline, f"RECEIPT {receipt!r}", before)
        if f.command == "RECEIPT" and f.headers.get("receipt-id") == receipt:
            return before, f
        if f.command == "ERROR":
            raise AssertionError(f"ERROR instead of RECEIPT {receipt!r}: {f!r}; frames before: {before}")
        before.append(f)


def join(c, dest, sub_id="s", headers=None, timeout=T) -> tuple[list[Frame], Frame]:
    """SUBSCRIBE with a receipt; returns (frames that came before the RECEIPT, the RECEIPT)."""
    r = "join-" + uid()
    c.send_frame("SUBSCRIBE", [("destination", dest), ("id", sub_id), ("ack", "auto"), ("receipt", r),
                               *(headers or {}).items()])
    return until_receipt(c, r, timeout)


def send(c, dest, body="", headers=None, timeout=T) -> Frame:
    """SEND with a receipt and wait for the RECEIPT (other frames stay queued on the client)."""
    r = "send-" + uid()
    c.send_frame("SEND", [("destination", dest), ("receipt", r), *(headers or {}).items()], body)
    return rx(c, lambda f: f.command == "RECEIPT" and f.headers.get("receipt-id") == r, timeout, f"RECEIPT {r}")


def sync(c):
    """A receipt round trip on ``c`` (a SEND to a private topic): the server has handled all of ``c``'s frames."""
    send(c, f"/topic/{uid()}", "sync")


def message(c, sub_id="s", timeout=T) -> Frame:
    return rx(c, lambda f: f.command == "MESSAGE" and f.headers.get("subscription") == sub_id, timeout,
              f"MESSAGE for subscription {sub_id!r}")


def messages(c, n, sub_id="s", timeout=T) -> list[Frame]:
    deadline = time.monotonic() + timeout
    return [message(c, sub_id, max(0.001, deadline - time.monotonic())) for _ in range(n)]


def offsets(frames) -> list[int]:
    return [int(f.headers["x-offset"]) for f in frames]


def bodies(frames) -> list[str]:
    return [f.body.decode() for f in frames]


def presence(f, kind=None) -> dict:
    """Checks what every presence MESSAGE has (JSON body, x-presence, x-presence-count = body count) and returns
    the parsed body."""
    assert f.command == "MESSAGE", f
    if kind is not None:
        assert f.headers.get("x-presence") == kind, f"expected x-presence:{kind}: {f!r}"
    assert f.headers.get("content-type", "").startswith("application/json"), f
    body = json.loads(f.body)
    assert isinstance(body.get("count"), int), body
    assert f.headers.get("x-presence-count") == str(body["count"]), f"x-presence-count does not match: {f!r}"
    return body


def watch(c, room, sub_id="p", headers=None) -> dict:
    """SUBSCRIBE to the presence of ``room``; returns the state body, which must be the first MESSAGE of the
    subscription (before or after the RECEIPT; diffs that follow it stay queued for ``next_diff``)."""
    before, _ = join(c, f"/presence/{room}", sub_id, headers)
    c.pending[0:0] = before
    return presence(message(c, sub_id), "state")


def next_diff(c, sub_id="p", timeout=T) -> dict:
    body = presence(message(c, sub_id, timeout), "diff")
    for key in ("joins", "leaves", "updates"):
        assert isinstance(body.get(key), dict), f"diff without a {key!r} object: {body}"
    return body


def member(meta, connections=1):
    return {"connections": connections, "meta": meta}


# --------------------------------------------------------------------------------------------------
# helpers (stomp.py)
# --------------------------------------------------------------------------------------------------


class FrameLog(stomp.ConnectionListener):
    """Records MESSAGE, RECEIPT and ERROR frames of a stomp.py connection in arrival order."""

    def __init__(self):
        self.cond = threading.Condition()
        self.frames: list = []

    def _add(self, frame):
        with self.cond:
            self.frames.append(frame)
            self.cond.notify_all()

    on_message = on_receipt = on_error = _add

    def wait(self, pred, n=1, timeout=T, what="frames") -> list:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                got = [f for f in self.frames if pred(f)]
                if len(got) >= n:
                    return got
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    got = [(f.cmd, f.headers) for f in self.frames]
                    raise AssertionError(f"timed out waiting for {n} {what}; got {got}")
                self.cond.wait(remaining)

    def receipt(self, rid, timeout=T):
        return self.wait(lambda f: f.cmd == "RECEIPT" and f.headers.get("receipt-id") == rid, 1, timeout,
                         f"RECEIPT {rid}")[0]

    def messages(self, sub_id, n, timeout=T):
        return self.wait(lambda f: f.cmd == "MESSAGE" and f.headers.get("subscription") == sub_id, n, timeout,
                         f"MESSAGEs for {sub_id}")


def py_client(stomp_client, kind, login):
    conn, col = stomp_client(kind, username=login, passcode="secret")
    log = FrameLog()
    conn.set_listener("rooms", log)
    return conn, log


def py_join(conn, log, dest, sub_id, headers=None):
    r = "join-" + uid()
    conn.subscribe(destination=dest, id=sub_id, ack="auto", receipt=r, headers=headers or None)
    return log.receipt(r)
