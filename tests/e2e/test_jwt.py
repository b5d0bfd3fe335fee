"""JWT bearer tokens (issue 9): HS256, RS256 and ES256 (keys made by the test), as passcode or `authorization`
header; exp / nbf / aud / iss; roles for [[acl]]; refresh without reconnecting; expiry closes the session."""

from __future__ import annotations

import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from e2e_helpers import RawTcpStomp, uid

SECRET = "a-test-secret-of-at-least-32-bytes!!"


def token(claims: dict, key=SECRET, algorithm="HS256") -> str:
    return jwt.encode(claims, key, algorithm=algorithm)


def connect(srv, passcode=None, login=None, authorization=None):
    client = RawTcpStomp(srv.stomp_port)
    headers = {"accept-version": "1.2", "host": "/"}
    if login:
        headers["login"] = login
    if passcode:
        headers["passcode"] = passcode
    if authorization:
        headers["authorization"] = authorization
    client.send_frame("CONNECT", headers)
    return client, client.recv_frame(10)


@pytest.fixture()
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture()
def ec_key():
    return ec.generate_private_key(ec.SECP256R1())


def pem(private_key) -> str:
    return private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def test_hs256_claims_and_headers(tmp_path, own_server):
    config = tmp_path / "c.toml"
    config.write_text(f'[auth]\njwt-secret = "{SECRET}"\njwt-audience = "starling"\njwt-issuer = "https://id.example"\nfailed-login-limit = 100\n'
                      '[[acl]]\nmatch = "/topic/ops.#"\nsubscribe = "role:ops"\nsend = "role:ops"\n')
    srv = own_server(["--config", str(config)])
    now = int(time.time())
    good = {"sub": "alice", "aud": ["other", "starling"], "iss": "https://id.example", "exp": now + 600, "roles": ["ops"]}
    client, frame = connect(srv, passcode=token(good))
    assert frame.command == "CONNECTED"
    client.send_frame("SUBSCRIBE", {"id": "s", "destination": "/topic/ops.alerts", "receipt": "r"})
    assert client.recv_until("RECEIPT").headers["receipt-id"] == "r", "the token's roles reach the access rules"
    client.send_frame("SEND", {"destination": "/topic/ops.alerts"}, "x")
    message = client.recv_until("MESSAGE")
    assert message.headers.get("user-name") == "alice", message
    client.close()
    client, frame = connect(srv, authorization="Bearer " + token(good))
    assert frame.command == "CONNECTED"
    client.close()
    client, frame = connect(srv, login="alice", passcode=token(good))
    assert frame.command == "CONNECTED", "a login naming the token's user is fine"
    client.close()
    for claims, key, login in [
        ({**good, "exp": now - 120}, SECRET, None),            # expired (past the 30 s leeway)
        ({**good, "nbf": now + 600}, SECRET, None),            # not yet valid
        ({**good, "aud": "someone-else"}, SECRET, None),
        ({**good, "iss": "https://evil.example"}, SECRET, None),
        ({k: v for k, v in good.items() if k != "sub"}, SECRET, None),
        (good, "another-secret-of-at-least-32-bytes!", None),  # wrong signature
        (good, SECRET, "bob"),                                   # login is not the token's user
    ]:
        client, frame = connect(srv, passcode=token(claims, key), login=login)
        assert frame.command == "ERROR" and frame.headers["message"] == "authentication failed: wrong login or passcode", claims
        client.close()
    unsigned = jwt.encode({**good}, None, algorithm="none")
    client, frame = connect(srv, passcode=unsigned + "x" * 0)
    assert frame.command == "ERROR"
    client.close()


@pytest.mark.parametrize("algorithm", ["RS256", "ES256"])
def test_public_key_algorithms(tmp_path, own_server, rsa_key, ec_key, algorithm):
    key = rsa_key if algorithm == "RS256" else ec_key
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048) if algorithm == "RS256" else ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "key.pem").write_text(pem(key))
    config = tmp_path / "c.toml"
    config.write_text(f'[auth]\njwt-public-key-file = "{tmp_path / "key.pem"}"\n')
    srv = own_server(["--config", str(config)])
    claims = {"sub": "carol", "exp": int(time.time()) + 600}
    client, frame = connect(srv, passcode=token(claims, key, algorithm))
    assert frame.command == "CONNECTED", frame
    client.close()
    client, frame = connect(srv, passcode=token(claims, other, algorithm))
    assert frame.command == "ERROR", "signed by another key"
    client.close()
    client, frame = connect(srv, passcode=token(claims, SECRET, "HS256"))
    assert frame.command == "ERROR", "HS256 with no secret configured (no key confusion)"
    client.close()


def test_refresh_and_expiry(tmp_path, own_server):
    config = tmp_path / "c.toml"
    config.write_text(f'[auth]\njwt-secret = "{SECRET}"\njwt-leeway-seconds = 3\n')
    srv = own_server(["--config", str(config)])
    # The leeway is 3 s: a token that expired 1 s ago is still good for about 2 s.
    short = token({"sub": "dave", "exp": int(time.time()) - 1})
    client, frame = connect(srv, passcode=short)
    assert frame.command == "CONNECTED"
    topic = f"/topic/{uid()}"
    client.send_frame("SUBSCRIBE", {"id": "s", "destination": topic})
    # Refreshing with another user's token, or garbage, is refused (and ends the session): try on a second session.
    other, _ = connect(srv, passcode=token({"sub": "dave", "exp": int(time.time()) + 600}))
    other.send_frame("SEND", {"destination": "/control/token", "receipt": "x"}, token({"sub": "eve", "exp": int(time.time()) + 600}))
    assert "another user" in other.recv_until("ERROR").headers["message"]
    other.close()
    # A fresh token for the same user keeps the session past the first one's expiry.
    client.send_frame("SEND", {"destination": "/control/token", "receipt": "r"}, token({"sub": "dave", "exp": int(time.time()) + 2}))
    assert client.recv_until("RECEIPT").headers["receipt-id"] == "r"
    time.sleep(3)
    client.send_frame("SEND", {"destination": topic, "receipt": "alive"}, "still here")
    assert client.recv_until("RECEIPT", 5).headers["receipt-id"] == "alive"
    # The refreshed token expires too (at exp + leeway): the session is told and closed.
    error = client.recv_until("ERROR", 10)
    assert error.headers["message"].startswith("token expired")
    client.wait_closed(5)


def test_refresh_that_drops_a_role_ends_the_subscription_it_allowed(tmp_path, own_server):
    """Roles come with each token: a refreshed token without the role a live subscription needed ends the session with
    an ERROR naming the destination, and no message of it is delivered after the refresh; one that keeps the role
    changes nothing."""
    config = tmp_path / "c.toml"
    config.write_text(f'[auth]\njwt-secret = "{SECRET}"\n'
                      '[[acl]]\nmatch = "/topic/ops.#"\nsubscribe = "role:ops"\nsend = "*"\n'
                      '[[acl]]\nmatch = "/topic/#"\nsubscribe = "*"\nsend = "*"\n')
    srv = own_server(["--config", str(config)])
    exp = int(time.time()) + 600
    client, frame = connect(srv, passcode=token({"sub": "frank", "exp": exp, "roles": ["ops"]}))
    assert frame.command == "CONNECTED"
    client.send_frame("SUBSCRIBE", {"id": "open", "destination": "/topic/news.today"})
    client.send_frame("SUBSCRIBE", {"id": "ops", "destination": "/topic/ops.alerts", "receipt": "s"})
    assert client.recv_until("RECEIPT").headers["receipt-id"] == "s"
    # Same role again: nothing changes.
    client.send_frame("SEND", {"destination": "/control/token", "receipt": "r1"}, token({"sub": "frank", "exp": exp, "roles": ["ops", "x"]}))
    assert client.recv_until("RECEIPT").headers["receipt-id"] == "r1"
    client.send_frame("SEND", {"destination": "/topic/ops.alerts"}, "before")
    assert client.recv_until("MESSAGE").body == b"before"
    # Without the role: ERROR naming the destination, with the refresh's receipt id, then the close.
    client.send_frame("SEND", {"destination": "/control/token", "receipt": "r2"}, token({"sub": "frank", "exp": exp, "roles": []}))
    error = client.recv_until("ERROR")
    assert error.headers["message"] == "access denied: with the refreshed token 'frank' may no longer subscribe to '/topic/ops.alerts'", error
    assert error.headers.get("receipt-id") == "r2"
    client.wait_closed(5)
    # The server goes on serving: a role-less session may still use the open topic.
    other, frame = connect(srv, passcode=token({"sub": "frank", "exp": exp}))
    other.send_frame("SUBSCRIBE", {"id": "n", "destination": "/topic/news.today", "receipt": "n"})
    assert other.recv_until("RECEIPT").headers["receipt-id"] == "n"
    other.close()


def test_token_in_the_websocket_handshake(tmp_path, own_server):
    """Browsers cannot set headers on a WebSocket: the token may come as ?access_token= (or Authorization: Bearer
    from other clients) with the handshake, and CONNECT then needs no passcode."""
    from e2e_helpers import RawWsStomp

    config = tmp_path / "c.toml"
    config.write_text(f'[auth]\njwt-secret = "{SECRET}"\nfailed-login-limit = 100\n')
    srv = own_server(["--config", str(config)])
    good = token({"sub": "erin", "exp": int(time.time()) + 600})
    client = RawWsStomp(srv.ws_url + "?access_token=" + good)
    client.send_frame("CONNECT", {"accept-version": "1.2", "host": "/"})
    assert client.recv_frame(10).command == "CONNECTED"
    client.close()
    header = RawWsStomp(srv.ws_url, additional_headers={"Authorization": "Bearer " + good})
    header.send_frame("CONNECT", {"accept-version": "1.2", "host": "/"})
    assert header.recv_frame(10).command == "CONNECTED"
    header.close()
    bad = RawWsStomp(srv.ws_url + "?access_token=" + token({"sub": "erin", "exp": int(time.time()) - 600}))
    bad.send_frame("CONNECT", {"accept-version": "1.2", "host": "/"})
    frame = bad.recv_frame(10)
    assert frame.command == "ERROR" and frame.headers["message"] == "authentication failed: wrong login or passcode"
    bad.close()
    plain = RawWsStomp(srv.ws_url)
    plain.send_frame("CONNECT", {"accept-version": "1.2", "host": "/"})
    assert plain.recv_frame(10).command == "ERROR", "no token anywhere"
    plain.close()
