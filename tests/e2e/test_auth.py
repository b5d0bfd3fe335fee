"""Authentication (issue 9, first part): a users file made by `starling passwd`, checked on CONNECT over TCP and
WebSocket; one answer for every kind of failure; failed logins limited per address; open only on loopback."""

from __future__ import annotations

import subprocess

import pytest
import stomp

from e2e_helpers import Collector, RawTcpStomp, ServerStartError, StarlingServer, encode_frame, starling_bin, uid

FAILED = "authentication failed: wrong login or passcode"


def passwd(users, user: str, password: str, *extra: str) -> None:
    result = subprocess.run(
        [starling_bin(), "passwd", str(users), user, "--iterations", "1000", *extra],
        input=password + "\n", capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 0, result.stderr


@pytest.fixture()
def secured(tmp_path, own_server):
    users = tmp_path / "users.txt"
    passwd(users, "alice", "s3cret", "--roles", "admin")
    passwd(users, "bob", "hunter2")
    passwd(users, "bob", "hunter3")  # changed: the old one stops working
    config = tmp_path / "c.toml"
    config.write_text(f'[auth]\nusers-file = "{users}"\n')
    return own_server(["--config", str(config)])


def connect(srv, login=None, passcode=None):
    client = RawTcpStomp(srv.stomp_port)
    headers = {"accept-version": "1.2", "host": "/"}
    if login is not None:
        headers["login"] = login
    if passcode is not None:
        headers["passcode"] = passcode
    client.send_frame("CONNECT", headers)
    frame = client.recv_frame(10)
    return client, frame


def test_users_file_logins(secured, tmp_path):
    assert (tmp_path / "users.txt").stat().st_mode & 0o077 == 0, "the users file is private to its owner"
    for login, passcode in [("alice", "s3cret"), ("bob", "hunter3")]:
        client, frame = connect(secured, login, passcode)
        assert frame.command == "CONNECTED", frame
        client.close()
    for login, passcode in [("alice", "wrong"), ("bob", "hunter2"), ("nobody", "s3cret"), (None, None), ("alice", None)]:
        client, frame = connect(secured, login, passcode)
        assert frame.command == "ERROR" and frame.headers["message"] == FAILED, (login, frame)
        client.wait_closed(5)
        client.close()


def test_frames_sent_with_connect_wait_for_the_check(secured):
    """CONNECT, SUBSCRIBE and SEND in one write: the SEND is delivered to the subscription once the login holds."""
    client = RawTcpStomp(secured.stomp_port)
    topic = f"/topic/{uid()}"
    client.send_raw(
        encode_frame("CONNECT", {"accept-version": "1.2", "host": "/", "login": "alice", "passcode": "s3cret"})
        + encode_frame("SUBSCRIBE", {"id": "s", "destination": topic})
        + encode_frame("SEND", {"destination": topic}, "early")
    )
    assert client.recv_frame(10).command == "CONNECTED"
    message = client.recv_until("MESSAGE", 10)
    assert message.body == b"early" and message.headers["user-name"] == "alice"
    client.close()


def test_failed_logins_are_limited_per_address(secured):
    for _ in range(5):
        client, frame = connect(secured, "alice", "nope")
        assert frame.headers["message"] == FAILED
        client.close()
    client, frame = connect(secured, "alice", "s3cret")
    assert frame.command == "ERROR" and "too many failed logins" in frame.headers["message"], frame
    client.close()


def test_websocket_login_with_stomp_py(secured):
    ok = stomp.WSStompConnection([("127.0.0.1", secured.http_port)], ws_path="/ws")
    ok.set_listener("c", Collector())
    ok.connect("alice", "s3cret", wait=True)
    assert ok.is_connected()
    ok.disconnect()
    bad = stomp.WSStompConnection([("127.0.0.1", secured.http_port)], ws_path="/ws")
    collector = Collector()
    bad.set_listener("c", collector)
    with pytest.raises(Exception):
        bad.connect("alice", "wrong", wait=True)
    assert any(FAILED in (f.headers.get("message") or "") for f in collector.errors), collector.errors


def test_anonymous_and_open_modes(tmp_path, own_server):
    users = tmp_path / "users.txt"
    passwd(users, "alice", "s3cret")
    config = tmp_path / "c.toml"
    config.write_text(f'[auth]\nusers-file = "{users}"\nanonymous = true\n')
    srv = own_server(["--config", str(config)])
    for login, passcode, expected in [(None, None, "CONNECTED"), ("alice", "s3cret", "CONNECTED"), ("alice", "x", "ERROR")]:
        client, frame = connect(srv, login, passcode)
        assert frame.command == expected, (login, frame)
        client.close()


def test_non_loopback_needs_auth(tmp_path):
    srv = StarlingServer(tmp_path / "data", ["--host", "0.0.0.0"])
    with pytest.raises(ServerStartError) as failure:
        srv.start()
    assert "needs an [auth] table" in str(failure.value)


@pytest.fixture()
def guarded(tmp_path, own_server):
    users = tmp_path / "users.txt"
    passwd(users, "feeder", "f", "--roles", "feed")
    passwd(users, "viewer", "v")
    config = tmp_path / "c.toml"
    config.write_text(
        f'[auth]\nusers-file = "{users}"\n'
        '[[acl]]\nmatch = "/topic/prices.secret.#"\nsubscribe = "role:admin"\n'
        '[[acl]]\nmatch = "/topic/prices.#"\nsubscribe = "*"\nsend = "role:feed"\n'
        '[[acl]]\nmatch = "/queue/#"\nsubscribe = "viewer"\nsend = "viewer, feeder"\n'
    )
    return own_server(["--config", str(config)])


def test_access_rules(guarded):
    viewer, frame = connect(guarded, "viewer", "v")
    assert frame.command == "CONNECTED"
    viewer.send_frame("SUBSCRIBE", {"id": "p", "destination": "/topic/prices.eu.*", "receipt": "r"})
    assert viewer.recv_until("RECEIPT").headers["receipt-id"] == "r"
    feeder, frame = connect(guarded, "feeder", "f")
    feeder.send_frame("SEND", {"destination": "/topic/prices.eu.aapl", "receipt": "s"}, "101")
    assert feeder.recv_until("RECEIPT").headers["receipt-id"] == "s"
    assert viewer.recv_until("MESSAGE").body == b"101"

    # A SEND the rules do not allow: ERROR naming the destination and the user, nothing delivered, connection closed.
    viewer.send_frame("SEND", {"destination": "/topic/prices.eu.aapl", "receipt": "t"}, "999")
    error = viewer.recv_until("ERROR")
    assert error.headers["message"] == "access denied: 'viewer' may not send to '/topic/prices.eu.aapl'"
    assert error.headers.get("receipt-id") == "t"
    viewer.wait_closed(5)

    # A wildcard that reaches a destination the user may not read is refused as a whole.
    for destination in ["/topic/prices.#", "/topic/prices.secret.x", "/topic/other"]:
        client, _ = connect(guarded, "viewer", "v")
        client.send_frame("SUBSCRIBE", {"id": "x", "destination": destination})
        error = client.recv_until("ERROR")
        assert error.headers["message"] == f"access denied: 'viewer' may not subscribe to '{destination}'", error
        client.close()

    # A transaction with one forbidden SEND does none of them.
    checker, _ = connect(guarded, "viewer", "v")
    checker.send_frame("SUBSCRIBE", {"id": "q", "destination": "/queue/jobs", "receipt": "q"})
    checker.recv_until("RECEIPT")
    feeder.send_frame("BEGIN", {"transaction": "tx"})
    feeder.send_frame("SEND", {"destination": "/queue/jobs", "transaction": "tx"}, "job")
    feeder.send_frame("SEND", {"destination": "/topic/prices.us.x", "transaction": "tx"}, "fine")
    feeder.send_frame("SEND", {"destination": "/topic/news", "transaction": "tx"}, "no rule")
    feeder.send_frame("COMMIT", {"transaction": "tx", "receipt": "c"})
    error = feeder.recv_until("ERROR")
    assert "may not send to '/topic/news'" in error.headers["message"]
    assert [f for f in checker.drain(0.5) if f.command == "MESSAGE"] == [], "nothing of the transaction was delivered"
    for client in (feeder, checker):
        client.close()
