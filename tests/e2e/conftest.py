"""Fixtures for the Starling end-to-end tests.

Run from the repository root:  STARLING_BIN=/path/to/starling python -m pytest -q tests/e2e
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import stomp

sys.path.insert(0, str(Path(__file__).resolve().parent))

from e2e_helpers import (  # noqa: E402
    Collector,
    RawTcpStomp,
    RawWsStomp,
    StarlingServer,
    assert_still_alive,
    start_or_fail,
    stomp_close,
    stomp_connect,
)


def _start(tmp_path_factory, name: str, extra_args=None) -> StarlingServer:
    return start_or_fail(StarlingServer(tmp_path_factory.mktemp(name), extra_args))


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """One Starling server shared by the whole session (default flags)."""
    srv = _start(tmp_path_factory, "starling-data")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def fast_heartbeat_server(tmp_path_factory):
    """A Starling server whose heart-beat floor is 200 ms both ways, so heart-beat tests take seconds, not minutes."""
    srv = _start(tmp_path_factory, "starling-hb", ["--heartbeat-send-ms", "200", "--heartbeat-receive-ms", "200"])
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def echo_server(tmp_path_factory):
    """A Starling server started with ``--echo-path /echo``."""
    srv = _start(tmp_path_factory, "starling-echo", ["--echo-path", "/echo"])
    yield srv
    srv.stop()


@pytest.fixture
def own_server(tmp_path_factory):
    """A fresh Starling server for a single test (e.g. one that the test shuts down)."""
    started = []

    def factory(extra_args=None) -> StarlingServer:
        srv = _start(tmp_path_factory, "starling-own", extra_args)
        started.append(srv)
        return srv

    yield factory
    for srv in started:
        srv.stop()


@pytest.fixture(autouse=True)
def _server_still_alive(request):
    """After each test that used the shared server, check that it did not crash."""
    yield
    assert_still_alive(request, "server", "the shared starling server")


@pytest.fixture
def raw_tcp(server):
    """Factory of hand-written STOMP clients over TCP (closed at teardown)."""
    clients = []

    def make(srv=None) -> RawTcpStomp:
        c = RawTcpStomp((srv or server).stomp_port)
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()


@pytest.fixture
def raw_ws(server):
    """Factory of hand-written STOMP clients over the ``websockets`` library (closed at teardown)."""
    clients = []

    def make(srv=None, path="/ws", **kw) -> RawWsStomp:
        c = RawWsStomp((srv or server).url(path), **kw)
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()


@pytest.fixture
def stomp_client(server):
    """Factory of connected stomp.py clients: ``stomp_client("tcp"|"tcp11"|"tcp10"|"ws")`` returns
    (connection, Collector). Disconnected at teardown."""
    conns = []

    def make(kind: str = "tcp", srv=None, heartbeats=(0, 0), ws_header=None, ws_path="/ws", **connect_kw):
        srv = srv or server
        if kind == "ws":
            # no timeout: websocket-client would keep it as a read timeout and kill idle connections
            conn = stomp.WSStompConnection([("127.0.0.1", srv.http_port)], ws_path=ws_path,
                                           heartbeats=heartbeats, header=ws_header, timeout=None,
                                           reconnect_attempts_max=1)
        else:
            cls = {"tcp": stomp.Connection12, "tcp12": stomp.Connection12, "tcp11": stomp.Connection11,
                   "tcp10": stomp.Connection10}[kind]
            kwargs = {} if kind == "tcp10" else {"heartbeats": heartbeats}
            conn = cls([("127.0.0.1", srv.stomp_port)], timeout=5, reconnect_attempts_max=1, **kwargs)
        col = Collector()
        conns.append(conn)
        stomp_connect(conn, col, **connect_kw)
        return conn, col

    yield make
    for conn in conns:
        stomp_close(conn)
