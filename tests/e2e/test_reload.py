"""SIGHUP reloads the configuration without dropping a connection: policies apply to existing queues at once, limits
and the admin token to what comes next; a bad file changes nothing; settings fixed at start are named as needing a
restart."""

from __future__ import annotations

import signal
import urllib.error
import urllib.request

from e2e_helpers import RawTcpStomp, uid

BASE = 'heartbeat-send-ms = 0\nheartbeat-receive-ms = 0\n'


def connect(srv):
    client = RawTcpStomp(srv.stomp_port)
    frame = client.connect()
    assert frame.command == "CONNECTED", frame
    return client, frame


def reload(srv, config, text: str, expect: str = "config reloaded") -> str:
    config.write_text(text)
    start = srv.line_count()
    srv.proc.send_signal(signal.SIGHUP)
    return srv.wait_for_line(expect, start, timeout=10)


def send(client, destination, body, receipt):
    client.send_frame("SEND", {"destination": destination, "receipt": receipt}, body)
    return client.recv_until("RECEIPT")


def test_policies_and_limits_change_live(tmp_path, own_server):
    config = tmp_path / "c.toml"
    config.write_text(BASE + 'max-subscriptions = 10\n')
    srv = own_server(["--config", str(config)])
    queue = f"/queue/live.{uid()}"
    old, connected = connect(srv)
    assert connected.headers["x-max-subscriptions"] == "10"
    for i in range(6):
        assert send(old, queue, f"m{i}", f"r{i}").command == "RECEIPT"

    line = reload(srv, config, BASE + 'max-subscriptions = 2\n[[policy]]\nmatch = "/queue/live.#"\nmax-length = 6\n')
    assert "needs_restart" not in line, line
    # The existing queue has the new max-length at once: the 7th message is refused, on the connection from before.
    refused = send(old, queue, "m6", "r6")
    assert refused.command == "ERROR" and "is full (max-length 6 messages)" in refused.headers["message"], refused
    # New connections get the new limits.
    new, connected = connect(srv)
    assert connected.headers["x-max-subscriptions"] == "2"
    for i in range(2):
        new.send_frame("SUBSCRIBE", {"id": f"s{i}", "destination": f"/topic/{uid()}"})
    new.send_frame("SUBSCRIBE", {"id": "s2", "destination": f"/topic/{uid()}", "receipt": "x"})
    error = new.recv_until("RECEIPT")
    assert error.command == "ERROR" and "too many subscriptions" in error.headers["message"], error


def test_connections_survive_and_bad_files_change_nothing(tmp_path, own_server):
    config = tmp_path / "c.toml"
    config.write_text(BASE + '[admin]\ntoken = "first-token-0123456789"\n')
    srv = own_server(["--config", str(config)])
    topic = f"/topic/{uid()}"
    subscriber, _ = connect(srv)
    subscriber.send_frame("SUBSCRIBE", {"id": "s", "destination": topic, "receipt": "s"})
    assert subscriber.recv_until("RECEIPT").headers["receipt-id"] == "s"

    def api(token):
        request = urllib.request.Request(f"http://127.0.0.1:{srv.http_port}/api/v1/queues", headers={"Authorization": f"Bearer {token}"})
        try:
            return urllib.request.urlopen(request, timeout=5).status
        except urllib.error.HTTPError as error:
            return error.code

    assert api("first-token-0123456789") == 200
    reload(srv, config, BASE + '[admin]\ntoken = "second-token-0123456789"\n')
    assert api("first-token-0123456789") == 401 and api("second-token-0123456789") == 200

    # A file with an error: logged with its line, nothing changes.
    line = reload(srv, config, BASE + 'colour = 1\n[admin]\ntoken = "third-token-0123456789"\n', expect="config reload failed")
    assert "unknown key 'colour'" in line, line
    assert api("second-token-0123456789") == 200 and api("third-token-0123456789") == 401
    # A setting fixed at start: applied as far as possible, and named.
    line = reload(srv, config, BASE + 'fsync = "off"\n[admin]\ntoken = "second-token-0123456789"\n')
    assert "needs_restart=fsync" in line, line

    # The subscriber from before every reload is still served.
    publisher, _ = connect(srv)
    assert send(publisher, topic, "after reloads", "p").command == "RECEIPT"
    message = subscriber.recv_until("MESSAGE")
    assert message.body == b"after reloads"
