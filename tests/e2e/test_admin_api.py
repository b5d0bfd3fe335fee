"""The admin HTTP API under /api/v1/ (docs/admin-api.md, docs/openapi.yaml): the [admin] token and its config
errors, publishing over HTTP to topics, queues, rooms and /user/ destinations (exactly like a STOMP SEND, persistent
messages on disk before the 200), refusals, request limits, connections (list, disconnect), queues (list, inspect,
purge, redrive), subscribed destinations, 404/405, concurrency, and the OpenAPI document checked against the
running server (every documented operation exists, every server route is documented, the answers seen in this
module match the documented statuses and schemas).

Every answer is compared as whole JSON (the server sends sorted keys, one object per response).
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import socket
import ssl
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass

import pytest
import stomp

from e2e_helpers import (
    REPO,
    Closed,
    Collector,
    RawTcpStomp,
    RawWsStomp,
    ServerStartError,
    StarlingServer,
    assert_still_alive,
    starling_bin,
    stomp_close,
    stomp_connect,
    subscribe_sync,
    uid,
)

TOKEN = "adm1n-T0ken-" + "k" * 20
AUTH = {"Authorization": f"Bearer {TOKEN}"}
T = 5.0
SPEC_PATH = REPO / "docs" / "openapi.yaml"
ADMIN_SOURCE = REPO / "Sources" / "StarlingServer" / "Admin" / "AdminAPI.swift"

UNAUTHORIZED = {"error": "unauthorized", "reason": "an admin token is required: Authorization: Bearer <token>"}
DISABLED = {"error": "disabled", "reason": "the admin API is off: set [admin] token in the config file"}
UNKNOWN_DESTINATION = ("unknown destination '{}': destinations start with /topic/, /queue/, /temp-queue/, /user/, "
                       "/room/ or /presence/")
# The shared server's STOMP body limit; the API takes request bodies up to twice that plus 64 KiB.
MAX_BODY = 4096
API_LIMIT = 2 * MAX_BODY + 64 * 1024


# ================================================================================================== HTTP helpers


@dataclass
class Reply:
    status: int
    json: object
    headers: dict[str, str]
    raw: bytes


# Every answer of an /api/ request in this module: (method, path, status, JSON body), checked against the OpenAPI
# document by test_every_answer_seen_is_documented (the last test of the file).
CALLS: list[tuple[str, str, int, object]] = []


def api(srv: StarlingServer, method: str, path: str, body=None, *, token: str | None = TOKEN, raw: bytes | None = None,
        headers: dict | None = None, https_ctx: ssl.SSLContext | None = None, timeout: float = 10.0) -> Reply:
    """One request on a fresh HTTP connection. ``body`` is sent as JSON; ``raw`` as is."""
    if https_ctx is not None:
        conn = http.client.HTTPSConnection("127.0.0.1", srv.https_port, timeout=timeout, context=https_ctx)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", srv.http_port, timeout=timeout)
    hdrs = {} if token is None else {"Authorization": f"Bearer {token}"}
    hdrs.update(headers or {})
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    if data is not None:
        hdrs.setdefault("Content-Type", "application/json")
    try:
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        payload = resp.read()
        reply = Reply(resp.status, None, {k.lower(): v for k, v in resp.getheaders()}, payload)
    finally:
        conn.close()
    if method != "HEAD":
        assert reply.headers.get("content-type") == "application/json", (method, path, reply)
        if reply.status != 413:  # the 413 answer is written before the API sees the request
            assert reply.headers.get("cache-control") == "no-store", (method, path, reply)
        reply.json = json.loads(payload)
    CALLS.append((method, urllib.parse.urlsplit(path).path, reply.status, reply.json))
    return reply


def ok(srv, method, path, body=None, **kw):
    """The JSON of a request that must answer 200."""
    reply = api(srv, method, path, body, **kw)
    assert reply.status == 200, (method, path, reply.status, reply.json)
    return reply.json


def publish(srv, destination, body=None, headers=None, **kw):
    payload = {"destination": destination}
    if body is not None:
        payload["body"] = body
    if headers is not None:
        payload["headers"] = headers
    assert ok(srv, "POST", "/api/v1/publish", payload, **kw) == {"published": destination}


def error(code, reason):
    return {"error": code, "reason": reason}


def queue_path(queue: str, suffix: str = "") -> str:
    """``/queue/x`` as the API names it: ``/api/v1/queues/x``."""
    assert queue.startswith("/queue/")
    return f"/api/v1/queues/{queue[len('/queue/'):]}{suffix}"


def wait_json(srv, path, expected, timeout=T):
    """Polls GET ``path`` until it answers 200 with ``expected``; returns the last answer either way (for the
    assertion message)."""
    deadline = time.monotonic() + timeout
    while True:
        reply = api(srv, "GET", path)
        if (reply.status, reply.json) == (200, expected) or time.monotonic() > deadline:
            return reply.json if reply.status == 200 else (reply.status, reply.json)
        time.sleep(0.05)


def conn_entry(session, transport, subscriptions, user=None, version=None):
    """A connection as documented (``user`` / ``version`` null when there are none)."""
    return {"session": session, "transport": transport, "remote": "127.0.0.1", "user": user, "version": version,
            "subscriptions": subscriptions}


def documented(entry: dict) -> dict:
    """A listed connection with the keys the server leaves out filled in as null (docs/admin-api.md shows null;
    test_connection_without_login_shows_null_user_and_version checks the keys themselves)."""
    return {"user": None, "version": None, **entry}


# ================================================================================================== servers, clients


def admin_config(directory, extra: str = "") -> str:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "starling.toml"
    path.write_text(f'[admin]\ntoken = "{TOKEN}"\n{extra}')
    return str(path)


def start(data_dir, args) -> StarlingServer:
    """A started server; waits up to 30 s while the binary is missing or being rewritten (a rebuild)."""
    deadline = time.monotonic() + 30
    while True:
        srv = StarlingServer(data_dir, args)
        try:
            return srv.start()
        except OSError:  # ETXTBSY: the binary is being written
            if time.monotonic() > deadline:
                raise
        except ServerStartError as e:
            if "binary not found" not in str(e) or time.monotonic() > deadline:
                pytest.fail(str(e), pytrace=False)
        time.sleep(1)


@pytest.fixture(scope="module")
def admin(tmp_path_factory):
    """One server for the module: the API on, STOMP bodies up to 4096 bytes (so the request limit is 73728)."""
    d = tmp_path_factory.mktemp("admin")
    srv = start(d / "data", ["--config", admin_config(d), "--max-body-size", str(MAX_BODY)])
    yield srv
    srv.stop()


@pytest.fixture(autouse=True)
def _admin_still_alive(request):
    yield
    assert_still_alive(request, "admin", "the admin server")


@pytest.fixture
def servers(tmp_path):
    """Starts servers for one test (stopped at teardown); ``restart`` starts one again on the same data dir."""
    started: list[StarlingServer] = []

    def make(extra_args=None, name="srv", config_extra: str | None = "") -> StarlingServer:
        args = list(extra_args or [])
        if config_extra is not None:
            args = ["--config", admin_config(tmp_path / name, config_extra), *args]
        srv = start(tmp_path / name / "data", args)
        started.append(srv)
        return srv

    def restart(srv: StarlingServer, kill: bool = False) -> StarlingServer:
        if kill:
            srv.kill()
        else:
            srv.stop()
            assert srv.proc.returncode == 0, srv.output()
        again = start(srv.data_dir, srv.extra_args)
        started.append(again)
        return again

    make.restart = restart
    yield make
    for srv in started:
        srv.stop()


@pytest.fixture
def clients():
    """Collects STOMP clients (raw or stomp.py) and closes them at teardown."""
    made: list = []

    class Clients:
        def tcp(self, srv, login=None, version="1.2", connect=True) -> RawTcpStomp:
            c = RawTcpStomp(srv.stomp_port)
            made.append(c)
            if connect:
                extra = [("login", login), ("passcode", "x")] if login else []
                f = c.connect(version, heart_beat="0,0", extra=extra)
                assert f.command == "CONNECTED", f
            return c

        def ws(self, srv, login=None, version="1.2", compression="deflate") -> RawWsStomp:
            c = RawWsStomp(srv.url("/ws"), compression=compression, proxy=None)
            made.append(c)
            extra = [("login", login), ("passcode", "x")] if login else []
            f = c.connect(version, heart_beat="0,0", extra=extra)
            assert f.command == "CONNECTED", f
            return c

        def py(self, srv, kind="tcp", login=None, passcode="x"):
            if kind == "ws":
                conn = stomp.WSStompConnection([("127.0.0.1", srv.http_port)], ws_path="/ws", heartbeats=(0, 0),
                                               timeout=None, reconnect_attempts_max=1)
            else:
                conn = stomp.Connection12([("127.0.0.1", srv.stomp_port)], timeout=5, heartbeats=(0, 0),
                                          reconnect_attempts_max=1)
            made.append(conn)
            col = Collector()
            kw = {"username": login, "passcode": passcode} if login else {}
            stomp_connect(conn, col, **kw)
            return conn, col

        def add(self, c):
            made.append(c)
            return c

    yield Clients()
    for c in made:
        if isinstance(c, stomp.Connection12) or isinstance(c, stomp.WSStompConnection):
            stomp_close(c)
        else:
            c.close()


def subscribe(c, destination, sub_id="s", ack="auto", **headers):
    """Raw SUBSCRIBE with a receipt; waits for the RECEIPT (frames before it stay queued)."""
    r = "sub-" + uid()
    c.send_frame("SUBSCRIBE", {"id": sub_id, "destination": destination, "ack": ack, "receipt": r, **headers})
    skipped = []
    while True:
        f = c.recv_frame(T)
        if f.command == "RECEIPT" and f.headers.get("receipt-id") == r:
            c.pending[0:0] = skipped
            return
        assert f.command != "ERROR", f
        skipped.append(f)


def messages(c, n, timeout=T):
    """The next ``n`` MESSAGE frames of a raw client (anything else fails)."""
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n:
        try:
            f = c.recv_frame(max(0.001, deadline - time.monotonic()))
        except (TimeoutError, Closed):
            raise AssertionError(f"{len(out)} of {n} MESSAGEs arrived: {out}") from None
        assert f.command == "MESSAGE", f
        out.append(f)
    return out


def nothing_more(c, seconds=0.3):
    assert c.drain(seconds) == []


# ================================================================================================== token, config


@pytest.mark.parametrize("authorization", [
    None,
    "Bearer wrong-token-wrong-token",
    f"Bearer {TOKEN}x",
    f"Bearer {TOKEN[:-1]}",
    f"Bearer {TOKEN.upper()}",
    f"Basic {base64.b64encode(f'admin:{TOKEN}'.encode()).decode()}",
    f"Token {TOKEN}",
    TOKEN,
    "Bearer ",
])
def test_requests_without_the_right_token_get_401(admin, clients, authorization):
    """Every endpoint, and paths that do not exist, answer 401 with WWW-Authenticate and do nothing."""
    topic = f"/topic/{uid()}"
    listener = clients.tcp(admin)
    subscribe(listener, topic)
    headers = {} if authorization is None else {"Authorization": authorization}
    for method, path, body in [("POST", "/api/v1/publish", {"destination": topic, "body": "forged"}),
                               ("GET", "/api/v1/connections", None), ("GET", "/api/v1/queues", None),
                               ("DELETE", "/api/v1/queues/x/messages", None), ("GET", "/api/v1/destinations", None),
                               ("GET", "/api/v1/nothing-here", None), ("GET", "/api/v2/queues", None),
                               ("PUT", "/api/v1/publish", None)]:
        reply = api(admin, method, path, body, token=None, headers=headers)
        assert (reply.status, reply.json) == (401, UNAUTHORIZED), (method, path)
        assert reply.headers["www-authenticate"] == 'Bearer realm="starling-admin"'
        assert reply.headers["cache-control"] == "no-store"
    nothing_more(listener)


@pytest.mark.parametrize("authorization", [f"Bearer {TOKEN}", f"bearer {TOKEN}", f"BEARER  {TOKEN} "])
def test_the_right_token_is_accepted(admin, clients, authorization):
    topic = f"/topic/{uid()}"
    listener = clients.tcp(admin)
    subscribe(listener, topic)
    reply = api(admin, "POST", "/api/v1/publish", {"destination": topic, "body": "real"}, token=None,
                headers={"Authorization": authorization})
    assert (reply.status, reply.json) == (200, {"published": topic})
    assert "www-authenticate" not in reply.headers
    (m,) = messages(listener, 1)
    assert m.body == b"real"
    nothing_more(listener)


def test_without_an_admin_table_the_api_is_disabled(servers, clients):
    """No [admin]: every /api/ request, with or without a token, is 404 disabled; publishing does nothing."""
    srv = servers([], config_extra=None)
    topic = f"/topic/{uid()}"
    listener = clients.tcp(srv)
    subscribe(listener, topic)
    for token in (TOKEN, None, "whatever"):
        for method, path, body in [("POST", "/api/v1/publish", {"destination": topic, "body": "x"}),
                                   ("GET", "/api/v1/connections", None), ("DELETE", "/api/v1/connections/x", None),
                                   ("GET", "/api/v1/queues", None), ("GET", "/api/v1/queues/x", None),
                                   ("DELETE", "/api/v1/queues/x/messages", None),
                                   ("POST", "/api/v1/queues/x.dlq/redrive", None),
                                   ("GET", "/api/v1/destinations", None), ("GET", "/api/v9/nope", None),
                                   ("GET", "/api/v1/publish", None)]:
            reply = api(srv, method, path, body, token=token)
            assert (reply.status, reply.json) == (404, DISABLED), (token, method, path)
            assert "www-authenticate" not in reply.headers
    nothing_more(listener)
    # The rest of the HTTP port is not affected.
    s = socket.create_connection(("127.0.0.1", srv.http_port), timeout=T)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert s.recv(100).startswith(b"HTTP/1.1 200")
    s.close()


SHORT = "the admin token must be at least 16 printable characters, without spaces"


@pytest.mark.parametrize("table, message", [
    ('token = "0123456789abcde"\n', "1: " + SHORT),                      # 15 characters
    ('token = "0123456789 abcdef"\n', "1: " + SHORT),                    # a space
    ('token = "01234567\t89abcdef"\n', "1: " + SHORT),                  # a tab (the file has no escapes)
    ('token = "\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9"\n', "1: " + SHORT),  # 18 bytes, not ASCII
    ('token = "0123456789abcdef"\ntokens = "x"\n', "3: unknown [admin] key 'tokens' (expected token, token-file)"),
    ('token-file = "{missing}"\n', "2: token-file: cannot read '{missing}'"),
    ('token-file = "{short}"\n', "1: " + SHORT),
    ("", "1: [admin] needs token or token-file"),
])
def test_config_errors_stop_the_start(tmp_path, table, message):
    short = tmp_path / "short.token"
    short.write_text("tooshort\n")
    fill = {"missing": str(tmp_path / "no-such.token"), "short": str(short)}
    config = tmp_path / "c.toml"
    config.write_text("[admin]\n" + table.format(**fill))
    srv = StarlingServer(tmp_path / "data", ["--config", str(config)])
    with pytest.raises(ServerStartError) as failure:
        srv.start()
    srv.kill()
    text = str(failure.value)
    assert f"Error: {config}:{message.format(**fill)}" in text, text
    assert "exited with code 64" in text, text


def test_token_file_and_the_shortest_token(tmp_path, servers):
    """token-file (surrounding whitespace trimmed) and a token of exactly 16 characters both work."""
    token_file = tmp_path / "admin.token"
    token_file.write_text("\n  0123456789abcdef  \n")
    config = tmp_path / "c.toml"
    config.write_text(f'[admin]\ntoken-file = "{token_file}"\n')
    srv = servers(["--config", str(config)], name="file", config_extra=None)
    assert ok(srv, "GET", "/api/v1/queues", token="0123456789abcdef") == {"queues": []}
    assert api(srv, "GET", "/api/v1/queues").status == 401
    assert api(srv, "GET", "/api/v1/queues", token="0123456789abcde").status == 401

    config2 = tmp_path / "c2.toml"
    config2.write_text('[admin]\ntoken = "~!@#$%^&*()_+{}|"\n')
    srv2 = servers(["--config", str(config2)], name="sixteen", config_extra=None)
    assert ok(srv2, "GET", "/api/v1/destinations", token="~!@#$%^&*()_+{}|") == {"subscribed": []}


# ================================================================================================== publish


def test_publish_to_a_topic_reaches_stomp_py_and_raw_subscribers(admin, clients):
    """The exact body and headers: user-name:admin (a given user-name is replaced), custom headers, numbers as
    text; destination, receipt, content-length and transaction in `headers` are not passed on."""
    topic = f"/topic/{uid()}.prices"
    conn, col = clients.py(admin, "tcp")
    subscribe_sync(conn, col, topic, "py")
    ws = clients.ws(admin, compression="deflate")
    subscribe(ws, topic, "ws")
    body = "h\u00e9llo \u2713 {\"price\": 191.2}"
    publish(admin, topic, body, {
        "content-type": "application/json", "x-key": "AAPL", "x-count": 10, "x-ratio": 1.5, "x-neg": -3,
        "x-multi": "a:b\\c\nd", "user-name": "mallory", "destination": "/topic/elsewhere", "receipt": "mine",
        "content-length": "999", "transaction": "tx-1",
    })
    (m,) = col.wait_messages(1)
    assert m.body == body
    h = dict(m.headers)
    assert h.pop("message-id")
    assert h == {"subscription": "py", "destination": topic, "user-name": "admin", "content-type": "application/json",
                 "x-key": "AAPL", "x-count": "10", "x-ratio": "1.5", "x-neg": "-3", "x-multi": "a:b\\c\nd",
                 "content-length": str(len(body.encode()))}
    (w,) = messages(ws, 1)
    assert w.body == body.encode()
    assert w.header_list == [("subscription", "ws"), ("destination", topic), ("message-id", m.headers["message-id"]),
                             ("user-name", "admin"), ("content-type", "application/json"), ("x-count", "10"),
                             ("x-key", "AAPL"), ("x-multi", "a:b\\c\nd"), ("x-neg", "-3"), ("x-ratio", "1.5"),
                             ("content-length", str(len(body.encode())))]
    time.sleep(0.2)
    assert len(col.messages) == 1 and col.errors == []
    nothing_more(ws)


def test_publish_boolean_header_values_are_true_and_false(admin, clients):
    """docs/admin-api.md: header values may be booleans, e.g. `persistent: true`, meaning what they mean on SEND.
    A SEND header is text, so true must arrive as `true` (the server only honours `persistent:true`)."""
    topic = f"/topic/{uid()}"
    listener = clients.tcp(admin)
    subscribe(listener, topic)
    publish(admin, topic, "flags", {"x-on": True, "x-off": False})
    (m,) = messages(listener, 1)
    assert (m.headers.get("x-on"), m.headers.get("x-off")) == ("true", "false"), m


def test_persistent_true_as_a_json_boolean_is_persistent(servers):
    """docs/admin-api.md names `persistent: true` among the headers: the message must be on disk at the 200 like
    one published with "persistent": "true" (kill -9, restart: both are there)."""
    srv = servers([])
    queue = f"/queue/{uid()}"
    publish(srv, queue, "as string", {"persistent": "true"})
    publish(srv, queue, "as boolean", {"persistent": True})
    srv = servers.restart(srv, kill=True)
    got = api(srv, "GET", queue_path(queue)).json
    assert got == {"name": queue, "ready": 2, "unacked": 0, "consumers": 0}, got


def test_publish_binary_and_empty_bodies(admin, clients):
    topic = f"/topic/{uid()}"
    listener = clients.tcp(admin)
    subscribe(listener, topic)
    binary = bytes(range(256)) + b"\x00\x00\xff"
    payloads = [
        {"body_base64": base64.b64encode(binary).decode(), "headers": {"content-type": "application/octet-stream"}},
        {},  # no body at all
        {"body_base64": ""},
        {"body": "text", "body_base64": "AAE="},  # `body` wins over `body_base64`
        {"body": None, "body_base64": "AAE="},  # a null `body` falls back to it
    ]
    for i, payload in enumerate(payloads):
        headers = {**payload.pop("headers", {}), "x-i": i}
        assert ok(admin, "POST", "/api/v1/publish", {"destination": topic, **payload, "headers": headers}) == \
            {"published": topic}
    # (sorted by x-i: publishes on separate HTTP connections may arrive out of order, see the ordering test)
    got = sorted(messages(listener, 5), key=lambda m: int(m.headers["x-i"]))
    assert [m.body for m in got] == [binary, b"", b"", b"text", b"\x00\x01"]
    assert got[0].headers["content-length"] == str(len(binary))
    assert got[0].headers["content-type"] == "application/octet-stream"
    assert [m.headers.get("content-length") for m in got[1:]] == [None, None, "4", "2"]
    nothing_more(listener)


def test_sequential_publishes_reach_a_topic_subscriber_in_order(admin, clients):
    """A client that sends each publish after the previous one's 200, on a new HTTP connection each time (as curl
    does), gets them delivered in that order: the 200 says the message was accepted, so what is accepted later
    must not overtake it. 60 sequences of 5 to fresh topics, each with a TCP and a WebSocket subscriber."""
    out_of_order = []
    for sequence in range(60):
        topic = f"/topic/{uid()}"
        listeners = [clients.tcp(admin), clients.ws(admin)]
        for listener in listeners:
            subscribe(listener, topic)
        for i in range(5):
            publish(admin, topic, f"m{i}")
        for listener in listeners:
            got = [m.body.decode() for m in messages(listener, 5)]
            if got != [f"m{i}" for i in range(5)]:
                out_of_order.append(got)
            listener.close()
    assert out_of_order == [], f"{len(out_of_order)} of 120 subscribers got a sequence out of order"


def test_publish_to_queue_room_and_user_destinations(admin, clients):
    # A queue: messages wait for a consumer, then arrive in order, once.
    queue = f"/queue/{uid()}"
    for i in range(3):
        publish(admin, queue, f"job{i}", {"x-job": i})
    assert ok(admin, "GET", queue_path(queue)) == {"name": queue, "ready": 3, "unacked": 0, "consumers": 0}
    conn, col = clients.py(admin, "ws")
    subscribe_sync(conn, col, queue, "q")
    got = col.wait_messages(3)
    assert [m.body for m in got] == ["job0", "job1", "job2"]
    for i, m in enumerate(got):
        assert {k: m.headers[k] for k in ("destination", "user-name", "x-job", "x-delivery-count")} == \
            {"destination": queue, "user-name": "admin", "x-job": str(i), "x-delivery-count": "1"}

    # A room: offsets and epoch like any room message, the author is admin.
    room = f"/room/{uid()}"
    member = clients.tcp(admin, login="carol")
    subscribe(member, room)
    publish(admin, room, "welcome", {"x-topic": "hello"})
    publish(admin, room, "again")
    first, second = messages(member, 2)
    assert first.body == b"welcome" and second.body == b"again"
    assert first.headers["user-name"] == "admin" and first.headers["x-topic"] == "hello"
    assert first.headers["destination"] == room
    assert int(second.headers["x-offset"]) == int(first.headers["x-offset"]) + 1
    assert first.headers["x-epoch"] == second.headers["x-epoch"] != ""

    # /user/<login>/...: every session of that user, nobody else.
    name = "u" + uid()
    alice_py, alice_col = clients.py(admin, "tcp", login=name)
    subscribe_sync(alice_py, alice_col, "/user/queue/inbox", "in")
    alice_ws = clients.ws(admin, login=name)
    subscribe(alice_ws, "/user/queue/inbox", "in")
    bob = clients.tcp(admin, login=name + "b")
    subscribe(bob, "/user/queue/inbox", "in")
    publish(admin, f"/user/{name}/queue/inbox", "for you", {"x-n": 1})
    (a1,) = alice_col.wait_messages(1)
    (a2,) = messages(alice_ws, 1)
    assert a1.body == "for you" and a2.body == b"for you"
    assert a1.headers["user-name"] == a2.headers["user-name"] == "admin"
    assert a1.headers["x-n"] == a2.headers["x-n"] == "1"
    nothing_more(bob)
    nothing_more(member)


def test_persistent_publish_is_on_disk_when_the_200_comes(servers):
    """kill -9 right after the last 200: every persistent message is there after the restart, with its headers;
    a transient one is not."""
    srv = servers([])
    queue = f"/queue/{uid()}"
    publish(srv, queue, "transient")
    for i in range(5):
        publish(srv, queue, f"p{i}", {"persistent": "true", "x-seq": i})
    srv = servers.restart(srv, kill=True)
    assert ok(srv, "GET", queue_path(queue)) == {"name": queue, "ready": 5, "unacked": 0, "consumers": 0}
    c = RawTcpStomp(srv.stomp_port)
    try:
        assert c.connect("1.2", heart_beat="0,0").command == "CONNECTED"
        subscribe(c, queue)
        got = messages(c, 5)
        assert [m.body for m in got] == [f"p{i}".encode() for i in range(5)]
        for i, m in enumerate(got):
            assert (m.headers["persistent"], m.headers["user-name"], m.headers["x-seq"]) == ("true", "admin", str(i))
        nothing_more(c)
    finally:
        c.close()


REFUSALS = [
    ("/bogus/x", "x", {}, UNKNOWN_DESTINATION.format("/bogus/x")),
    ("/topic/a.*", "x", {}, "'/topic/a.*' contains a wildcard ('*' or '#'); wildcards are allowed only when subscribing"),
    ("/queue/", "x", {}, "destination '/queue/': the queue name is empty"),
    ("/topic/big", "b" * (MAX_BODY + 1), {}, f"Body larger than {MAX_BODY} bytes"),
    ("/topic/many", "x", {f"h{i}": "v" for i in range(64)}, "More than 64 headers in a frame"),
    ("/topic/long", "x", {"h": "v" * 9000}, "Header line longer than 8192 bytes"),
    ("/queue/ttl", "x", {"ttl": "soon"}, None),
    ("/topic/t", "x", {"": "v"}, "Malformed header line ':v'"),
]


@pytest.mark.parametrize("destination, body, headers, reason", REFUSALS)
def test_refused_publish_is_422_with_the_stomp_error(admin, clients, destination, body, headers, reason):
    """The reason is exactly the ERROR message a STOMP client gets for the same SEND; the next publish works."""
    reply = api(admin, "POST", "/api/v1/publish", {"destination": destination, "body": body, "headers": headers})
    assert reply.status == 422, reply
    stomp_client = clients.tcp(admin)
    stomp_client.send_frame("SEND", [("destination", destination), *headers.items(), ("receipt", "r")], body)
    f = stomp_client.recv_frame(T)
    assert f.command == "ERROR", f
    assert reply.json == error("refused", f.headers["message"])
    if reason is not None:
        assert reply.json == error("refused", reason)
    topic = f"/topic/{uid()}"
    listener = clients.tcp(admin)
    subscribe(listener, topic)
    publish(admin, topic, "still fine")
    assert messages(listener, 1)[0].body == b"still fine"


def test_refused_publish_to_presence_and_gone_temp_queue(admin):
    room = uid()
    assert api(admin, "POST", "/api/v1/publish", {"destination": f"/presence/{room}", "body": ""}).json == error(
        "refused", f"this session is not in room '/room/{room}': SUBSCRIBE to it before updating presence")
    reply = api(admin, "POST", "/api/v1/publish", {"destination": "/temp-queue/x", "body": ""})
    assert reply.status == 422
    assert re.fullmatch(r"temporary queue '/queue/temp\.[^']+\.x' does not exist \(its connection is gone\)",
                        reply.json["reason"]), reply.json


def test_full_queue_refuses_the_publish(servers, clients):
    """overflow reject-publish: the publish past max-length is 422 with the broker's reason; what was queued stays."""
    srv = servers(["--event-loops", "1", "--set", "queue-max-length=3"])
    queue = f"/queue/{uid()}"
    for body in "abc":
        publish(srv, queue, body)
    reply = api(srv, "POST", "/api/v1/publish", {"destination": queue, "body": "d"})
    probe = clients.tcp(srv)
    probe.send_frame("SEND", {"destination": queue, "receipt": "r"}, "e")
    stomp_error = probe.recv_frame(T)
    assert stomp_error.command == "ERROR"
    assert (reply.status, reply.json) == (422, error("refused", stomp_error.headers["message"]))
    assert "is full (max-length 3" in reply.json["reason"], reply.json
    assert ok(srv, "GET", queue_path(queue)) == {"name": queue, "ready": 3, "unacked": 0, "consumers": 0}
    consumer = clients.tcp(srv)
    subscribe(consumer, queue)
    assert [m.body for m in messages(consumer, 3)] == [b"a", b"b", b"c"]
    nothing_more(consumer)


def test_a_refusal_does_not_answer_other_publishes_in_flight(servers):
    """One event loop; 15 persistent publishes waiting for their group commit and one refused publish among them
    (each on its own HTTP connection). All 15 are accepted and delivered, so each must get its 200, not the other
    request's refusal."""
    target = f"/queue/{uid()}"
    srv = servers(["--event-loops", "1"])
    for attempt in range(3):
        bodies = [f"a{attempt}-{i}" for i in range(15)]
        socks = [socket.create_connection(("127.0.0.1", srv.http_port), timeout=10) for _ in range(16)]
        requests = [_raw_publish({"destination": target, "body": b, "headers": {"persistent": "true"}})
                    for b in bodies]
        requests.insert(8, _raw_publish({"destination": "/bogus/x", "body": "no"}))
        for s, r in zip(socks, requests):
            s.sendall(r)
        answers = [_read_http(s) for s in socks]
        for s in socks:
            s.close()
        assert answers[8] == (422, error("refused", UNKNOWN_DESTINATION.format("/bogus/x")))
        del answers[8]
        drained = _drain_queue(srv, target, len(bodies))
        assert sorted(drained) == sorted(bodies), "every good publish was delivered"
        wrong = [(bodies[i], a) for i, a in enumerate(answers) if a != (200, {"published": target})]
        assert wrong == [], f"accepted and delivered publishes were answered with another request's refusal: {wrong}"


def _raw_publish(payload) -> bytes:
    body = json.dumps(payload).encode()
    return (f"POST /api/v1/publish HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


def _read_http(s: socket.socket) -> tuple[int, object]:
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        assert chunk, buf
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
    while len(rest) < length:
        chunk = s.recv(65536)
        assert chunk
        rest += chunk
    return int(head.split(b" ")[1]), json.loads(rest[:length])


def _drain_queue(srv, queue, n) -> list[str]:
    c = RawTcpStomp(srv.stomp_port)
    try:
        c.connect("1.2", heart_beat="0,0")
        subscribe(c, queue)
        got = [m.body.decode() for m in messages(c, n)]
        nothing_more(c, 0.2)
        c.send_frame("UNSUBSCRIBE", {"id": "s"})
        return got
    finally:
        c.close()


@pytest.mark.parametrize("raw, reason", [
    (b"not json", 'expected a JSON object: {"destination": ..., "body": ...}'),
    (b"", 'expected a JSON object: {"destination": ..., "body": ...}'),
    (b"[1, 2]", 'expected a JSON object: {"destination": ..., "body": ...}'),
    (b'"/topic/x"', 'expected a JSON object: {"destination": ..., "body": ...}'),
    (b'{"destination": "/topic/x", "body": "unterminated}', 'expected a JSON object: {"destination": ..., "body": ...}'),
    (b'{"body": "x"}', "'destination' (a string) is required"),
    (b'{"destination": "", "body": "x"}', "'destination' (a string) is required"),
    (b'{"destination": 5, "body": "x"}', "'destination' (a string) is required"),
    (b'{"destination": "/topic/x", "body": 5}', "'body' must be a string (use 'body_base64' for binary)"),
    (b'{"destination": "/topic/x", "body": {"a": 1}}', "'body' must be a string (use 'body_base64' for binary)"),
    (b'{"destination": "/topic/x", "body_base64": "!!!"}', "'body_base64' is not valid base64"),
    (b'{"destination": "/topic/x", "body_base64": "AAE"}', "'body_base64' is not valid base64"),
    (b'{"destination": "/topic/x", "headers": [1]}', "'headers' must be an object of strings"),
    (b'{"destination": "/topic/x", "headers": "a:b"}', "'headers' must be an object of strings"),
    (b'{"destination": "/topic/x", "headers": {"a": null}}', "header 'a' must be a string, number or boolean"),
    (b'{"destination": "/topic/x", "headers": {"b": [1]}}', "header 'b' must be a string, number or boolean"),
])
def test_bad_publish_bodies_are_400(admin, clients, raw, reason):
    listener = clients.tcp(admin)
    subscribe(listener, "/topic/x")
    reply = api(admin, "POST", "/api/v1/publish", raw=raw)
    assert (reply.status, reply.json) == (400, error("bad_request", reason))
    assert reply.headers["connection"] == "close"
    nothing_more(listener, 0.1)


def test_request_bodies_over_the_limit_are_413(admin, clients):
    """Twice max-body-size plus 64 KiB: a body of exactly that size is read (and refused by the broker for its
    STOMP body size), one byte more is 413 whatever the method, once the token is checked (without it: 401, which
    does not reveal the limit)."""
    topic = f"/topic/{uid()}"
    listener = clients.tcp(admin)
    subscribe(listener, topic)
    prefix = json.dumps({"destination": topic, "body": ""})
    at_limit = json.dumps({"destination": topic, "body": "a" * (API_LIMIT - len(prefix))}).encode()
    assert len(at_limit) == API_LIMIT
    reply = api(admin, "POST", "/api/v1/publish", raw=at_limit)
    assert (reply.status, reply.json) == (422, error("refused", f"Body larger than {MAX_BODY} bytes"))
    too_large = error("too_large", f"the request body is over {API_LIMIT} bytes")
    over = json.dumps({"destination": topic, "body": "a" * (API_LIMIT + 1 - len(prefix))}).encode()
    for method, path, token in [("POST", "/api/v1/publish", TOKEN), ("GET", "/api/v1/queues", TOKEN), ("POST", "/api/v1/nothing", TOKEN)]:
        reply = api(admin, method, path, raw=over, token=token)
        assert (reply.status, reply.json) == (413, too_large), (method, path, token)
        assert reply.headers["connection"] == "close"
    for token in [None, "bad-token"]:
        reply = api(admin, "POST", "/api/v1/publish", raw=over, token=token)
        assert reply.status == 401 and reply.json["error"] == "unauthorized", (token, reply.json)
    big = json.dumps({"destination": topic, "body": "a" * 3_000_000}).encode()
    reply = api(admin, "POST", "/api/v1/publish", raw=big)
    assert (reply.status, reply.json) == (413, too_large)
    # The largest STOMP body still goes through.
    publish(admin, topic, "z" * MAX_BODY)
    (m,) = messages(listener, 1)
    assert m.body == b"z" * MAX_BODY
    nothing_more(listener)


def test_concurrent_publishes_arrive_once_and_in_order_per_connection(admin, clients):
    """10 HTTP keep-alive connections x 5 publishes each, all at once: a stomp.py and a raw subscriber get all 50
    exactly once, each connection's in its order; 50 single-shot publishes to a queue in parallel all land once."""
    topic = f"/topic/{uid()}"
    conn, col = clients.py(admin, "tcp")
    subscribe_sync(conn, col, topic, "py")
    raw = clients.ws(admin)
    subscribe(raw, topic, "raw")
    barrier = threading.Barrier(10)
    failures: list = []

    def worker(n):
        http_conn = http.client.HTTPConnection("127.0.0.1", admin.http_port, timeout=10)
        try:
            barrier.wait()
            for i in range(5):
                payload = json.dumps({"destination": topic, "body": f"c{n}-{i}"})
                http_conn.request("POST", "/api/v1/publish", payload, AUTH)
                resp = http_conn.getresponse()
                answer = (resp.status, json.loads(resp.read()))
                if answer != (200, {"published": topic}):
                    failures.append((n, i, answer))
        except Exception as e:  # noqa: BLE001
            failures.append((n, repr(e)))
        finally:
            http_conn.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert failures == []
    expected = {f"c{n}-{i}" for n in range(10) for i in range(5)}
    got_py = [m.body for m in col.wait_messages(50, 10)]
    got_raw = [m.body.decode() for m in messages(raw, 50, 10)]
    for got in (got_py, got_raw):
        assert sorted(got) == sorted(expected)
        for n in range(10):
            assert [b for b in got if b.startswith(f"c{n}-")] == [f"c{n}-{i}" for i in range(5)]
    time.sleep(0.2)
    assert len(col.messages) == 50
    nothing_more(raw, 0.1)

    queue = f"/queue/{uid()}"
    results: list = []

    def one(i):
        results.append(api(admin, "POST", "/api/v1/publish", {"destination": queue, "body": f"q{i}"}).status)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == [200] * 50
    assert ok(admin, "GET", queue_path(queue)) == {"name": queue, "ready": 50, "unacked": 0, "consumers": 0}
    assert sorted(_drain_queue(admin, queue, 50)) == sorted(f"q{i}" for i in range(50))


# ================================================================================================== connections


def test_connections_list(servers, clients):
    """TCP, WebSocket with and without permessage-deflate, stomp.py, and a socket that has not sent CONNECT:
    transports, users from CONNECT login, versions, subscription counts, sorted by session; user= and limit=;
    the API's own publishing sessions are never listed."""
    srv = servers([])
    tcp = clients.tcp(srv, login="alice", version="1.1")
    subscribe(tcp, "/topic/a.*", "a")
    subscribe(tcp, "/queue/work", "b")
    subscribe(tcp, "/room/lobby", "c")
    deflate = clients.ws(srv, login="bob", version="1.2", compression="deflate")
    subscribe(deflate, "/topic/b", "x")
    plain = clients.ws(srv, version="1.0", compression=None)
    py, col = clients.py(srv, "ws", login="carol")
    subscribe_sync(py, col, "/topic/c", "c1")
    subscribe_sync(py, col, "/topic/d", "c2")
    clients.tcp(srv, connect=False)  # a socket that has not sent CONNECT
    time.sleep(0.2)
    publish(srv, "/topic/a.x", "from the API")  # starts the API's own session: it must not be listed
    publish(srv, "/queue/jobs", "job")

    sessions = {"alice": tcp.connected_frame.headers["session"], "bob": deflate.connected_frame.headers["session"],
                "plain": plain.connected_frame.headers["session"], "carol": col.connected[0].headers["session"]}
    listed = ok(srv, "GET", "/api/v1/connections")
    assert listed["total"] == 5 and len(listed["connections"]) == 5, listed
    unknown = [c["session"] for c in listed["connections"] if c["session"] not in sessions.values()]
    assert len(unknown) == 1, listed
    sessions["bare"] = unknown[0]
    expected = sorted([
        conn_entry(sessions["alice"], "tcp", 3, "alice", "1.1"),
        conn_entry(sessions["bob"], "ws+deflate", 1, "bob", "1.2"),
        conn_entry(sessions["plain"], "ws", 0, None, "1.0"),
        conn_entry(sessions["carol"], "ws", 2, "carol", "1.2"),
        conn_entry(sessions["bare"], "tcp", 0, None, None),
    ], key=lambda c: c["session"])
    assert [documented(c) for c in listed["connections"]] == expected
    assert [c["session"] for c in listed["connections"]] == sorted(c["session"] for c in listed["connections"])

    for query, total, entries in [("?user=alice", 1, expected_for(expected, "alice")),
                                  ("?user=carol&limit=5", 1, expected_for(expected, "carol")),
                                  ("?user=nobody", 0, []),
                                  ("?limit=2", 5, expected[:2]),
                                  ("?limit=0", 5, []),
                                  ("?limit=-3", 5, []),
                                  ("?limit=many", 5, expected),
                                  ("?user=alice&limit=0", 1, [])]:
        got = ok(srv, "GET", "/api/v1/connections" + query)
        assert {"total": got["total"], "connections": [documented(c) for c in got["connections"]]} == \
            {"total": total, "connections": entries}, query

    # What an admin publish is published as: the API's session is not a connection, and cannot be disconnected.
    consumer = clients.tcp(srv)
    subscribe(consumer, "/queue/jobs", "w")
    (job,) = messages(consumer, 1)
    admin_session = job.headers["message-id"].rsplit("-", 1)[0]
    assert "admin" in admin_session, job
    assert api(srv, "DELETE", f"/api/v1/connections/{admin_session}").json == error(
        "not_found", f"no connection with session id '{admin_session}'")
    assert ok(srv, "GET", "/api/v1/connections")["total"] == 6


def expected_for(entries, user):
    return [c for c in entries if c["user"] == user]


def test_connection_without_login_shows_null_user_and_version(admin, clients):
    """docs/admin-api.md: `"user": null, "version": null` (version null until CONNECTED)."""
    bare = clients.tcp(admin, connect=False)
    anonymous = clients.tcp(admin)
    time.sleep(0.2)
    listed = ok(admin, "GET", "/api/v1/connections")["connections"]
    anon = [c for c in listed if c["session"] == anonymous.connected_frame.headers["session"]]
    assert anon == [conn_entry(anonymous.connected_frame.headers["session"], "tcp", 0, None, "1.2")], anon
    pre = [c for c in listed if "version" not in c or c["version"] is None]
    assert len(pre) >= 1 and all(c == conn_entry(c["session"], "tcp", 0, None, None) for c in pre), pre
    bare.close()


def test_disconnect_by_session_id(admin, clients):
    """TCP and WebSocket clients get ERROR `disconnected by an administrator` and are closed; their unacked queue
    message goes back to the queue; a second DELETE, an unknown id, are 404."""
    queue = f"/queue/{uid()}"
    tcp = clients.tcp(admin, login="d" + uid())
    subscribe(tcp, queue, ack="client-individual")
    publish(admin, queue, "held")
    (held,) = messages(tcp, 1)
    ws = clients.ws(admin, login="d" + uid())
    assert ok(admin, "GET", queue_path(queue)) == {"name": queue, "ready": 0, "unacked": 1, "consumers": 1}
    for client in (tcp, ws):
        session = client.connected_frame.headers["session"]
        one = ok(admin, "GET", f"/api/v1/connections/{session}")
        assert one["session"] == session and one["version"] == "1.2" and one["transport"] in ("tcp", "ws", "ws+deflate"), one
        assert ok(admin, "DELETE", f"/api/v1/connections/{session}") == {"disconnected": session}
        frames = client.wait_closed(T)
        assert [(f.command, f.headers.get("message")) for f in frames] == [("ERROR", "disconnected by an administrator")]
        deadline = time.monotonic() + T
        while (reply := api(admin, "GET", f"/api/v1/connections/{session}")).status == 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (reply.status, reply.json) == (404, error("not_found", f"no connection with session id '{session}'"))
        assert api(admin, "DELETE", f"/api/v1/connections/{session}").json == error(
            "not_found", f"no connection with session id '{session}'")
        listed = ok(admin, "GET", "/api/v1/connections")["connections"]
        assert session not in [c["session"] for c in listed]
    assert held.body == b"held"
    assert wait_json(admin, queue_path(queue), {"name": queue, "ready": 1, "unacked": 0, "consumers": 0}) == \
        {"name": queue, "ready": 1, "unacked": 0, "consumers": 0}
    for bad in ["nope", "%2Fweird%20id", "x" * 300]:
        reply = api(admin, "DELETE", f"/api/v1/connections/{bad}")
        assert reply.json == error("not_found", f"no connection with session id '{urllib.parse.unquote(bad)}'")
        assert reply.status == 404
    assert ok(admin, "DELETE", queue_path(queue, "/messages")) == {"queue": queue, "purged": 1}


def test_disconnect_a_stomp_py_client(admin, clients):
    conn, col = clients.py(admin, "tcp", login="p" + uid())
    session = col.connected[0].headers["session"]
    assert ok(admin, "DELETE", f"/api/v1/connections/{session}") == {"disconnected": session}
    col.wait_for(lambda: col.disconnected, what="the disconnect")
    assert [e.headers.get("message") for e in col.errors] == ["disconnected by an administrator"]


# ================================================================================================== queues


def test_queues_list_inspect_and_purge(admin, clients):
    """ready / unacked / consumers; by short name and by a percent-encoded full destination; purge deletes only
    the ready messages; unknown queues are 404."""
    queue = f"/queue/{uid()}"
    other = f"{queue}.other"
    for i in range(5):
        publish(admin, queue, f"m{i}")
    publish(admin, other, "o")
    consumer = clients.tcp(admin)
    subscribe(consumer, queue, ack="client-individual", **{"prefetch-count": "2"})
    first, second = messages(consumer, 2)
    state = {"name": queue, "ready": 3, "unacked": 2, "consumers": 1}
    listed = ok(admin, "GET", "/api/v1/queues")["queues"]
    assert [q for q in listed if q["name"].startswith(queue)] == [state, {"name": other, "ready": 1, "unacked": 0,
                                                                          "consumers": 0}]
    assert [q["name"] for q in listed] == sorted(q["name"] for q in listed)
    assert ok(admin, "GET", queue_path(queue)) == state
    assert ok(admin, "GET", "/api/v1/queues/" + urllib.parse.quote(queue, safe="")) == state

    assert ok(admin, "DELETE", queue_path(queue, "/messages")) == {"queue": queue, "purged": 3}
    assert ok(admin, "GET", queue_path(queue)) == {"name": queue, "ready": 0, "unacked": 2, "consumers": 1}
    assert ok(admin, "DELETE", "/api/v1/queues/" + urllib.parse.quote(queue, safe="") + "/messages") == \
        {"queue": queue, "purged": 0}
    nothing_more(consumer)  # nothing purged is delivered
    consumer.send_frame("ACK", {"id": first.headers["ack"], "receipt": "a"})
    assert consumer.recv_frame(T).command == "RECEIPT"
    assert ok(admin, "GET", queue_path(queue)) == {"name": queue, "ready": 0, "unacked": 1, "consumers": 1}
    consumer.close()  # the unacked one goes back
    assert wait_json(admin, queue_path(queue), {"name": queue, "ready": 1, "unacked": 0, "consumers": 0}) == \
        {"name": queue, "ready": 1, "unacked": 0, "consumers": 0}
    assert ok(admin, "DELETE", queue_path(queue, "/messages")) == {"queue": queue, "purged": 1}
    assert ok(admin, "DELETE", queue_path(other, "/messages")) == {"queue": other, "purged": 1}
    assert second.body == b"m1"

    missing = f"/queue/{uid()}"
    for method, path in [("GET", queue_path(missing)), ("DELETE", queue_path(missing, "/messages")),
                         ("POST", queue_path(missing, "/redrive")),
                         ("GET", "/api/v1/queues/" + urllib.parse.quote(missing, safe=""))]:
        reply = api(admin, method, path)
        assert (reply.status, reply.json) == (404, error("not_found", f"no queue '{missing}'")), path


def test_purge_deletes_persistent_messages_from_the_store(servers, clients):
    """Purge, then restart on the same data directory: the purged messages stay gone; the ones that were unacked
    during the purge are still there."""
    srv = servers([])
    queue = f"/queue/{uid()}"
    for i in range(6):
        publish(srv, queue, f"m{i}", {"persistent": "true"})
    consumer = clients.tcp(srv)
    subscribe(consumer, queue, ack="client-individual", **{"prefetch-count": "2"})
    assert [m.body for m in messages(consumer, 2)] == [b"m0", b"m1"]
    assert ok(srv, "DELETE", queue_path(queue, "/messages")) == {"queue": queue, "purged": 4}
    consumer.close()
    expected = {"name": queue, "ready": 2, "unacked": 0, "consumers": 0}
    assert wait_json(srv, queue_path(queue), expected) == expected
    srv = servers.restart(srv)
    assert ok(srv, "GET", "/api/v1/queues") == {"queues": [expected]}
    assert sorted(_drain_queue(srv, queue, 2)) == ["m0", "m1"]

    # Purged down to nothing: after a restart the queue does not come back.
    for i in range(3):
        publish(srv, queue, f"n{i}", {"persistent": "true"})
    assert ok(srv, "DELETE", queue_path(queue, "/messages")) == {"queue": queue, "purged": 3}
    srv = servers.restart(srv)
    assert ok(srv, "GET", "/api/v1/queues") == {"queues": []}
    assert api(srv, "GET", queue_path(queue)).status == 404


def test_redrive_round_trip(servers, clients):
    """queue-max-deliveries=1: NACKed messages land in <queue>.dlq; redrive moves them back (in the store too, so
    a restart keeps them in the original queue), where they are consumed with a fresh delivery count."""
    srv = servers(["--set", "queue-max-deliveries=1"])
    queue = f"/queue/orders{uid()}"
    dlq = queue + ".dlq"
    for i in range(3):
        publish(srv, queue, f"o{i}", {"persistent": "true", "x-order": i})
    worker = clients.tcp(srv)
    subscribe(worker, queue, ack="client-individual")
    for m in messages(worker, 3):
        worker.send_frame("NACK", {"id": m.headers["ack"]})
    dead = {"name": dlq, "ready": 3, "unacked": 0, "consumers": 0}
    assert wait_json(srv, queue_path(dlq), dead) == dead
    assert ok(srv, "GET", "/api/v1/queues") == {"queues": [{"name": queue, "ready": 0, "unacked": 0, "consumers": 1},
                                                          dead]}
    worker.close()

    assert ok(srv, "POST", queue_path(dlq, "/redrive")) == {"queue": dlq, "moved": 3}
    back = {"name": queue, "ready": 3, "unacked": 0, "consumers": 0}
    assert wait_json(srv, "/api/v1/queues", {"queues": [back]}) == {"queues": [back]}
    assert api(srv, "GET", queue_path(dlq)).json == error("not_found", f"no queue '{dlq}'")
    assert api(srv, "POST", queue_path(dlq, "/redrive")).status == 404

    srv = servers.restart(srv)
    assert ok(srv, "GET", "/api/v1/queues") == {"queues": [back]}
    consumer = clients.tcp(srv)
    subscribe(consumer, queue, ack="client-individual")
    got = messages(consumer, 3)
    assert [m.body for m in got] == [b"o0", b"o1", b"o2"]
    for i, m in enumerate(got):
        assert (m.headers["destination"], m.headers["x-delivery-count"], m.headers["x-order"],
                m.headers["persistent"]) == (queue, "1", str(i), "true"), m
        assert "redelivered" not in m.headers, m
    # The count really restarted: one more NACK (max-deliveries 1) dead-letters it again after this delivery.
    consumer.send_frame("NACK", {"id": got[0].headers["ack"]})
    for m in got[1:]:
        consumer.send_frame("ACK", {"id": m.headers["ack"]})
    again = {"name": dlq, "ready": 1, "unacked": 0, "consumers": 0}
    assert wait_json(srv, queue_path(dlq), again) == again
    assert ok(srv, "POST", "/api/v1/queues/" + urllib.parse.quote(dlq, safe="") + "/redrive") == {"queue": dlq,
                                                                                                   "moved": 1}
    (last,) = messages(consumer, 1)
    assert (last.body, last.headers["x-delivery-count"]) == (b"o0", "1")
    consumer.send_frame("ACK", {"id": last.headers["ack"], "receipt": "done"})
    assert consumer.recv_frame(T).command == "RECEIPT"
    assert ok(srv, "GET", queue_path(queue)) == {"name": queue, "ready": 0, "unacked": 0, "consumers": 1}


# ================================================================================================== rooms


def test_rooms_and_their_presence(admin, clients):
    """GET /api/v1/rooms: member count, newest offset and kept messages of each room; GET /api/v1/rooms/{room}:
    who is present, with metadata and connection counts; 404 for a room that does not exist."""
    word = uid()
    room = f"/room/{word}"
    alice, bob = "a" + word, "b" + word
    a1 = clients.tcp(admin, login=alice)
    subscribe(a1, room, "r", **{"x-presence-status": "online"})
    a2 = clients.ws(admin, login=alice)
    subscribe(a2, room, "r", **{"x-presence-status": "online"})
    b = clients.tcp(admin, login=bob)
    subscribe(b, room, "r")
    publish(admin, room, "one")
    publish(admin, room, "two")
    assert [m.body for m in messages(b, 2)] == [b"one", b"two"]
    listed = ok(admin, "GET", "/api/v1/rooms")["rooms"]
    assert [r["destination"] for r in listed] == sorted(r["destination"] for r in listed)
    assert [r for r in listed if word in r["destination"]] == [
        {"name": word, "destination": room, "members": 2, "lastOffset": 2, "kept": 2}]
    members = [{"user": alice, "meta": {"status": "online"}, "connections": 2},
               {"user": bob, "meta": {}, "connections": 1}]
    assert ok(admin, "GET", f"/api/v1/rooms/{word}") == {"room": word, "members": members}
    assert ok(admin, "GET", "/api/v1/rooms/" + urllib.parse.quote(room, safe="")) == {"room": room, "members": members}
    missing = uid()
    reply = api(admin, "GET", f"/api/v1/rooms/{missing}")
    assert (reply.status, reply.json) == (404, error(
        "not_found", f"no room '{missing}' (a room exists while it has members or history)"))
    for method, path in [("POST", "/api/v1/rooms"), ("DELETE", f"/api/v1/rooms/{word}")]:
        reply = api(admin, method, path)
        assert (reply.status, reply.json) == (405, error("method_not_allowed", f"{method} is not allowed on {path}"))


# ================================================================================================== destinations


def test_destinations(admin, clients):
    """Topic destinations and patterns, rooms, presence and /user/ destinations with their subscriber counts over
    every connection (queues are not listed); an unsubscribed pattern goes away."""
    word = uid()
    login = "u" + word
    a = clients.tcp(admin, login=login)
    b = clients.ws(admin)
    c, col = clients.py(admin, "tcp")
    subscribe(a, f"/topic/{word}.*", "p1")
    subscribe(b, f"/topic/{word}.*", "p2")
    subscribe_sync(c, col, f"/topic/{word}.*", "p3")
    subscribe(a, f"/topic/{word}.exact", "e")
    subscribe(b, f"/room/{word}", "r")
    subscribe(b, f"/presence/{word}", "pr")
    subscribe(a, "/user/queue/inbox", "u")
    subscribe(a, f"/queue/{word}", "q")

    def mine():
        listed = ok(admin, "GET", "/api/v1/destinations")["subscribed"]
        assert [d["pattern"] for d in listed] == sorted(d["pattern"] for d in listed)
        return [d for d in listed if word in d["pattern"]]

    assert mine() == [
        {"pattern": f"/presence/{word}", "subscribers": 1},
        {"pattern": f"/room/{word}", "subscribers": 1},
        {"pattern": f"/topic/{word}.*", "subscribers": 3},
        {"pattern": f"/topic/{word}.exact", "subscribers": 1},
        {"pattern": f"/user/{login}/queue/inbox", "subscribers": 1},
    ]
    b.send_frame("UNSUBSCRIBE", {"id": "p2", "receipt": "u1"})
    assert b.recv_until("RECEIPT").headers["receipt-id"] == "u1"
    a.send_frame("UNSUBSCRIBE", {"id": "e", "receipt": "u2"})
    assert a.recv_until("RECEIPT").headers["receipt-id"] == "u2"
    assert {d["pattern"]: d["subscribers"] for d in mine()}[f"/topic/{word}.*"] == 2
    assert f"/topic/{word}.exact" not in [d["pattern"] for d in mine()]
    for client in (a, b):
        client.close()
    stomp_close(c)
    deadline = time.monotonic() + T
    while mine() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert mine() == []


# ================================================================================================== 404 / 405


@pytest.mark.parametrize("method, path", [
    ("GET", "/api/v1/publish"), ("PUT", "/api/v1/publish"), ("DELETE", "/api/v1/publish"),
    ("POST", "/api/v1/connections"), ("DELETE", "/api/v1/connections"), ("PUT", "/api/v1/connections/abc"),
    ("PATCH", "/api/v1/connections/abc"), ("POST", "/api/v1/queues"), ("DELETE", "/api/v1/queues"),
    ("PUT", "/api/v1/queues/orders"), ("DELETE", "/api/v1/queues/orders"), ("GET", "/api/v1/queues/orders/messages"),
    ("POST", "/api/v1/queues/orders/messages"), ("GET", "/api/v1/queues/orders/redrive"),
    ("DELETE", "/api/v1/queues/orders/redrive"), ("POST", "/api/v1/destinations"), ("OPTIONS", "/api/v1/queues"),
])
def test_wrong_method_on_a_known_resource_is_405(admin, method, path):
    reply = api(admin, method, path)
    assert (reply.status, reply.json) == (405, error("method_not_allowed", f"{method} is not allowed on {path}"))


@pytest.mark.parametrize("path", ["/api/v1/nothing", "/api/v2/queues", "/api/v1", "/api/", "/api/v1/topics",
                                  "/api/V1/queues", "/api/v1/Queues"])
def test_unknown_paths_are_404(admin, path):
    for method in ("GET", "POST", "DELETE"):
        reply = api(admin, method, path)
        assert (reply.status, reply.json) == (404, error("not_found", f"no such endpoint: {path} (see docs/admin-api.md)"))


@pytest.mark.parametrize("method, path", [
    ("POST", "/api/v1/publish/extra"), ("GET", "/api/v1/destinations/x"), ("GET", "/api/v1/queues/orders/other"),
    ("DELETE", "/api/v1/connections/a/b"), ("GET", "/api/v1/queues/a/messages/b"),
])
def test_unknown_paths_under_known_resources_are_404(admin, method, path):
    """A path no route has is an unknown path (404), also below a known resource, not a method problem (405)."""
    reply = api(admin, method, path)
    assert (reply.status, reply.json) == (404, error("not_found", f"no such endpoint: {path} (see docs/admin-api.md)"))


# ================================================================================================== auth, TLS


def test_admin_publishes_past_auth_and_acl_rules(tmp_path, servers, clients):
    """With [auth] and [[acl]]: the API's session needs no password, the rules do not apply to it (the token is the
    permission), and the listing shows the logged-in user."""
    users = tmp_path / "users.txt"
    result = subprocess.run([starling_bin(), "passwd", str(users), "alice", "--iterations", "1000"],
                            input="s3cret\n", capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    srv = servers([], config_extra=f'[auth]\nusers-file = "{users}"\n'
                                   '[[acl]]\nmatch = "/topic/prices.#"\nsubscribe = "*"\nsend = "role:feed"\n')
    alice = clients.add(RawTcpStomp(srv.stomp_port))
    assert alice.connect("1.2", heart_beat="0,0", extra=[("login", "alice"), ("passcode", "s3cret")]).command == \
        "CONNECTED"
    subscribe(alice, "/topic/prices.eu")
    assert ok(srv, "GET", "/api/v1/connections?user=alice") == {"total": 1, "connections": [
        {"session": alice.connected_frame.headers["session"], "transport": "tcp", "remote": "127.0.0.1",
         "user": "alice", "version": "1.2", "subscriptions": 1}]}
    publish(srv, "/topic/prices.eu", "191.2")
    (m,) = messages(alice, 1)
    assert (m.body, m.headers["user-name"]) == (b"191.2", "admin")
    # alice herself may not send there (the rule holds for STOMP clients)
    alice.send_frame("SEND", {"destination": "/topic/prices.eu", "receipt": "r"}, "x")
    assert alice.recv_frame(T).headers["message"] == "access denied: 'alice' may not send to '/topic/prices.eu'"
    impostor = clients.add(RawTcpStomp(srv.stomp_port))
    assert impostor.connect("1.2", extra=[("login", "admin")]).command == "ERROR"


def test_api_over_https_and_tls_transport_labels(tmp_path, servers, clients):
    from test_tls import TlsStomp, client_ctx, make_ca, make_leaf  # certificates made with `cryptography`

    ca = make_ca("Admin test CA")
    cert, key = make_leaf(ca, "127.0.0.1").write(tmp_path, "server")
    cafile = tmp_path / "ca.pem"
    cafile.write_bytes(ca.cert_pem())
    srv = servers([], config_extra=f'[tls]\ncert-file = "{cert}"\nkey-file = "{key}"\nport = 0\nstomp-port = 0\n')
    assert srv.https_port and srv.stomps_port
    ctx = client_ctx(cafile)
    tls = clients.add(TlsStomp(srv.stomps_port, ctx))
    assert tls.connect("1.2", heart_beat="0,0", extra=[("login", "tina")]).command == "CONNECTED"
    wss = clients.add(RawWsStomp(f"wss://127.0.0.1:{srv.https_port}/ws", compression="deflate", ssl=ctx, proxy=None))
    assert wss.connect("1.2", heart_beat="0,0", extra=[("login", "wendy")]).command == "CONNECTED"
    wss_plain = clients.add(RawWsStomp(f"wss://127.0.0.1:{srv.https_port}/ws", compression=None, ssl=ctx, proxy=None))
    assert wss_plain.connect("1.2", heart_beat="0,0", extra=[("login", "walt")]).command == "CONNECTED"
    subscribe(wss, "/topic/secure")
    listed = ok(srv, "GET", "/api/v1/connections", https_ctx=ctx)
    assert [documented(c) for c in listed["connections"]] == sorted([
        conn_entry(tls.connected_frame.headers["session"], "tcp+tls", 0, "tina", "1.2"),
        conn_entry(wss.connected_frame.headers["session"], "wss+deflate", 1, "wendy", "1.2"),
        conn_entry(wss_plain.connected_frame.headers["session"], "wss", 0, "walt", "1.2"),
    ], key=lambda c: c["session"])
    assert api(srv, "GET", "/api/v1/queues", token=None, https_ctx=ctx).status == 401
    publish(srv, "/topic/secure", "over https", https_ctx=ctx)
    assert messages(wss, 1)[0].body == b"over https"


# ================================================================================================== OpenAPI


def load_spec():
    yaml = pytest.importorskip("yaml", reason="PyYAML (tests/requirements.txt)")
    with open(SPEC_PATH) as f:
        return yaml.safe_load(f)


METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


def spec_operations(spec) -> dict[tuple[str, str], dict]:
    return {(method.upper(), path): op for path, item in spec["paths"].items() for method, op in item.items()
            if method in METHODS}


def template(path: str) -> str:
    return re.sub(r"\{[^}]*\}", "{}", path)


def source_routes() -> set[tuple[str, str]]:
    """The routes of AdminAPI.handle, read from its switch: `case (.GET, 2, "queues") where route[2] == "x":`."""
    text = ADMIN_SOURCE.read_text()
    routes = set()
    for method, count, resource, sub in re.findall(
            r'case \(\.([A-Z]+), (\d+), "([a-z]+)"\)(?: where route\[2\] == "([a-z]+)")?:', text):
        path = {"1": f"/api/v1/{resource}", "2": f"/api/v1/{resource}/{{}}",
                "3": f"/api/v1/{resource}/{{}}/{sub}"}[count]
        routes.add((method, path))
    return routes


def resolve(spec, node):
    while isinstance(node, dict) and "$ref" in node:
        target = spec
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        node = target
    return node


def validate(spec, schema, value, where="$") -> list[str]:
    """The subset of JSON Schema docs/openapi.yaml uses: type, enum, const, required, properties,
    additionalProperties, items, minimum, minLength."""
    schema = resolve(spec, schema)
    problems: list[str] = []
    kinds = schema.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else kinds
        checks = {"object": lambda v: isinstance(v, dict), "array": lambda v: isinstance(v, list),
                  "string": lambda v: isinstance(v, str), "boolean": lambda v: isinstance(v, bool),
                  "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
                  "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
                  "null": lambda v: v is None}
        if not any(checks[k](value) for k in kinds):
            return [f"{where}: {value!r} is not of type {kinds}"]
    if "enum" in schema and value not in schema["enum"]:
        problems.append(f"{where}: {value!r} not in {schema['enum']}")
    if "const" in schema and value != schema["const"]:
        problems.append(f"{where}: {value!r} != {schema['const']!r}")
    if isinstance(value, (int, float)) and "minimum" in schema and value < schema["minimum"]:
        problems.append(f"{where}: {value} < {schema['minimum']}")
    if isinstance(value, str) and len(value) < schema.get("minLength", 0):
        problems.append(f"{where}: shorter than {schema['minLength']}")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in value:
                problems.append(f"{where}: missing {name!r}")
        for name, item in value.items():
            if name in props:
                problems += validate(spec, props[name], item, f"{where}.{name}")
            elif schema.get("additionalProperties") is False:
                problems.append(f"{where}: unexpected {name!r}")
            elif isinstance(schema.get("additionalProperties"), dict):
                problems += validate(spec, schema["additionalProperties"], item, f"{where}.{name}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            problems += validate(spec, schema["items"], item, f"{where}[{i}]")
    return problems


def response_schema(spec, op, status):
    response = resolve(spec, op["responses"][str(status)])
    return response["content"]["application/json"]["schema"]


def match_operation(spec, method, path):
    for (m, p), op in spec_operations(spec).items():
        pattern = "".join("[^/]+" if part.startswith("{") else re.escape(part) for part in re.split(r"(\{[^}]*\})", p))
        if m == method and re.fullmatch(pattern, path):
            return p, op
    return None, None


def test_openapi_document_is_valid():
    spec = load_spec()
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(spec)
    assert spec["openapi"].startswith("3.1")
    scheme = spec["components"]["securitySchemes"]["bearerAuth"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    assert spec["security"] == [{"bearerAuth": []}]


def test_openapi_routes_are_the_server_routes(admin, clients):
    """Every documented path+method answers 200 (with real resources) with a body that fits the documented schema;
    every route of the server's switch is documented; no undocumented method or path under the resources answers."""
    spec = load_spec()
    ops = spec_operations(spec)
    documented_routes = {(m, template(p)) for m, p in ops}
    routes = source_routes()
    assert len(routes) >= 8, routes  # the parser still understands AdminAPI.swift
    assert routes == documented_routes, (f"in the server, not documented: {routes - documented_routes}; "
                                         f"documented, not in the server: {documented_routes - routes}")

    # Real resources for the path parameters.
    queue = f"/queue/{uid()}"
    publish(admin, queue, "x")
    victim = clients.tcp(admin)
    room = uid()
    member = clients.tcp(admin, login="m" + room)
    subscribe(member, f"/room/{room}")

    def concrete(method, path):
        name = queue[len("/queue/"):]
        session = victim.connected_frame.headers["session"]
        return path.replace("{name}", name).replace("{session}", session).replace("{room}", room)

    problems = []
    for (method, path), op in ops.items():
        if "{name}" in path:
            publish(admin, queue, "x")
        body = {"destination": f"/topic/{uid()}", "body": "spec"} if "requestBody" in op else None
        reply = api(admin, method, concrete(method, path), body)
        if set(op["responses"]) < {"200", "401", "404", "413", "503"}:
            problems.append((method, path, "does not document 200, 401, 404, 413 and 503"))
        if reply.status != 200:
            problems.append((method, path, reply.status, reply.json))
        elif validate(spec, response_schema(spec, op, 200), reply.json):
            problems.append((method, path, validate(spec, response_schema(spec, op, 200), reply.json)))
    assert problems == [], "documented operations the running server does not serve as documented"

    # Everything else under the resources is 404 or 405, never an answer.
    candidates = ["/api/v1/publish", "/api/v1/connections", "/api/v1/connections/abc", "/api/v1/queues",
                  f"/api/v1/queues/{queue[7:]}", f"/api/v1/queues/{queue[7:]}/messages",
                  f"/api/v1/queues/{queue[7:]}/redrive", "/api/v1/destinations", "/api/v1/queues/a/b",
                  "/api/v1/rooms", f"/api/v1/rooms/{room}", "/api/v1/status", "/api/v1/health", "/api/v1/metrics",
                  "/api/v1/users", "/api/v1/topics"]
    for path in candidates:
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
            documented_path, op = match_operation(spec, method, path)
            if op is not None:
                continue
            body = {"destination": "/topic/nowhere", "body": "x"} if method == "POST" else None
            reply = api(admin, method, path, body)
            if reply.status not in (404, 405) or reply.json["error"] not in ("not_found", "method_not_allowed"):
                problems.append((method, path, reply.status, reply.json))
    assert problems == [], "undocumented operations that answer"


def test_every_answer_seen_is_documented():
    """Last in the file: every /api/ answer this module saw (from any server) has its status documented for its
    operation and a body that fits the documented schema; errors are always the Error object."""
    spec = load_spec()
    error_schema = spec["components"]["schemas"]["Error"]
    if not CALLS:
        pytest.skip("run with the rest of test_admin_api.py")
    seen: set = set()
    for method, path, status, body in CALLS:
        if status >= 400:
            assert validate(spec, error_schema, body) == [], (method, path, status, body)
        documented_path, op = match_operation(spec, method, path)
        if op is None:
            assert status in (401, 404, 405, 413), (method, path, status, body)
            continue
        assert str(status) in op["responses"], f"{method} {documented_path} answered {status}, not documented: {body}"
        assert validate(spec, response_schema(spec, op, status), body) == [], (method, path, status, body)
        seen.add((method, documented_path, status))
    assert len(seen) >= 10, seen


def test_refused_publishes_are_not_counted_as_error_frames(admin):
    """A 422 comes from the API's own STOMP session, whose ERROR reaches no client: `starling_errors_total` stays,
    and the API's sessions are not counted as client sessions."""

    def scrape() -> dict[str, float]:
        text = urllib.request.urlopen(f"http://127.0.0.1:{admin.http_port}/metrics", timeout=T).read().decode()
        return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                if line.startswith(("starling_errors_total", "starling_sessions "))}

    before = scrape()
    for _ in range(3):
        assert api(admin, "POST", "/api/v1/publish", {"destination": "/nope/x", "body": ""}).status == 422
        publish(admin, f"/topic/{uid()}", "fine")
    after = scrape()
    assert {k: v for k, v in after.items() if k.startswith("starling_errors_total")} == \
        {k: v for k, v in before.items() if k.startswith("starling_errors_total")}
    assert after["starling_sessions"] == before["starling_sessions"]
