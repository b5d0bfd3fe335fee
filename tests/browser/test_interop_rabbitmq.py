"""starling.js interoperates with another STOMP 1.2 broker: RabbitMQ Web-STOMP, in headless Chromium.

The web client (web-client/starling.js) is served with tests/browser/interop.html + interop.js by a small HTTP
server on 127.0.0.1; the page's WebSocket goes to a private RabbitMQ (benchmarks/rabbitmq.sh, its own RMQ_DIR,
non-default loopback ports) at ws://127.0.0.1:<RMQ_WS_PORT>/ws. Each test runs one check of interop.js with its
own connections, standard STOMP features only (no Starling extensions):

* CONNECT with login/passcode: CONNECTED version 1.2, the negotiated heart-beat; heart-beats flowing both ways;
* SUBSCRIBE /topic/x + SEND: the MESSAGE's headers and a UTF-8 (non-ASCII) body, content-length in bytes, JSON;
* header value escaping (':', '\\n', '\\\\', and STOMP 1.2's '\\r') round-trips through the broker;
* receipts as promises for SEND, SUBSCRIBE and UNSUBSCRIBE (generated and chosen ids);
* UNSUBSCRIBE stops delivery;
* /queue/ with ack:client-individual: ACK one, NACK another (redelivered with redelivered:true), queue drained;
* transactions: BEGIN + two SENDs + ABORT delivers nothing, COMMIT delivers both, in order;
* an ERROR from the broker (SEND to /bogus/x) is an "error" event and rejects the SEND's receipt promise;
* a wrong passcode rejects connect() without retrying; DISCONNECT waits for its RECEIPT.

What RabbitMQ (3.10) does differently, and how the checks take it (starling.js is not changed for it):
* it reads CONNECT's `host` as the virtual host: starling.js's default (the URL's host name, as STOMP 1.2
  recommends) is refused ("Virtual host '127.0.0.1' access denied"), so the checks pass host "/";
* its ERROR for a bad SEND has no receipt-id and it keeps the connection open, so the receipt promise is rejected
  only by `receiptTimeout` (the check sets one) or when the connection ends; the "error" event comes at once;
* it answers DISCONNECT by closing the WebSocket without the RECEIPT: disconnect() resolves on the close, at once;
* it copies SEND headers such as `receipt` and `transaction` into the MESSAGE (harmless).

Needs what conftest.py needs (chromium, chromium-driver, selenium) plus rabbitmq-server (Debian's, which includes
rabbitmq_web_stomp; benchmarks/rabbitmq.sh apt-installs it when run as root). Skipped, with the reason, when
RabbitMQ cannot be installed or started, unless STARLING_REQUIRE_BROWSER=1 (CI), which makes that a failure.
Ports: RMQ_WS_PORT (35674), RMQ_AMQP_PORT (35675), RMQ_DIST_PORT (35676), RMQ_EPMD_PORT (35677).
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

pytest.importorskip("selenium", reason="selenium is not installed (pip install -r tests/browser/requirements.txt)")

from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
RABBITMQ_SH = REPO / "benchmarks" / "rabbitmq.sh"
REQUIRED = os.environ.get("STARLING_REQUIRE_BROWSER") == "1"
PORTS = {
    "RMQ_WS_PORT": os.environ.get("RMQ_WS_PORT", "35674"),
    "RMQ_AMQP_PORT": os.environ.get("RMQ_AMQP_PORT", "35675"),
    "RMQ_DIST_PORT": os.environ.get("RMQ_DIST_PORT", "35676"),
    "RMQ_EPMD_PORT": os.environ.get("RMQ_EPMD_PORT", "35677"),
}
CHECK_TIMEOUT = 20  # seconds for one check in the page (each of its waits has its own, shorter timeout)


def _unavailable(reason: str):
    if REQUIRED:
        pytest.fail(f"RabbitMQ interop test required (STARLING_REQUIRE_BROWSER=1) but cannot run: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def rabbitmq(tmp_path_factory):
    """A private RabbitMQ with Web-STOMP on 127.0.0.1:$RMQ_WS_PORT; yields the WebSocket URL; always stopped."""
    if not shutil.which("bash"):
        _unavailable("bash not found (needed by benchmarks/rabbitmq.sh)")
    installed = Path("/usr/lib/rabbitmq/bin/rabbitmq-server").exists()
    if not installed and os.geteuid() != 0:
        _unavailable("rabbitmq-server is not installed (apt-get install -y rabbitmq-server) and installing it needs root")
    env = {
        **os.environ,
        **PORTS,
        "RMQ_DIR": str(tmp_path_factory.mktemp("rabbitmq") / "rmq"),
        "RMQ_NODENAME": "starlinginterop@localhost",
        "RMQ_NOFILE": "4096",
        "RMQ_START_TIMEOUT": "60",
    }

    def rmq(command: str, timeout: float) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(RABBITMQ_SH), command], env=env, capture_output=True, text=True, timeout=timeout)

    try:
        try:
            started = rmq("start", 90 if installed else 600)  # apt-get install only when it is missing
        except subprocess.TimeoutExpired:
            _unavailable("benchmarks/rabbitmq.sh start timed out")
        if started.returncode != 0:
            tail = "\n".join(started.stderr.strip().splitlines()[-12:])
            _unavailable(f"benchmarks/rabbitmq.sh start failed (exit {started.returncode}):\n{tail}")
        yield f"ws://127.0.0.1:{PORTS['RMQ_WS_PORT']}/ws"
    finally:
        stop = rmq("stop", 60)  # also after a failed or timed-out start
        if stop.returncode != 0:
            print(f"benchmarks/rabbitmq.sh stop failed: {stop.stderr}")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, ".js": "text/javascript"}

    def log_message(self, *args):  # keep pytest's output clean
        pass


@pytest.fixture(scope="module")
def page_base(tmp_path_factory):
    """http://127.0.0.1:<port>/ serving starling.js and the interop page (modules need http, not file://)."""
    root = tmp_path_factory.mktemp("interop-web")
    shutil.copy(REPO / "web-client" / "starling.js", root / "starling.js")
    for name in ("interop.html", "interop.js"):
        shutil.copy(HERE / name, root / name)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def interop_page(browser, page_base, rabbitmq):
    """The interop page, loaded once; returns a function running one check in it."""
    browser.set_script_timeout(CHECK_TIMEOUT)
    browser.get(f"{page_base}/interop.html?ws={rabbitmq}")
    try:
        WebDriverWait(browser, 10, poll_frequency=0.05).until(
            lambda d: d.execute_script("return document.body.dataset.ready") == "1")
    except Exception as error:  # noqa: BLE001
        raise AssertionError(f"the interop page did not load: {console(browser)}") from error

    def run(name: str) -> dict:
        result = browser.execute_async_script(
            "const done = arguments[arguments.length - 1]; window.runCheck(arguments[0]).then(done);", name)
        assert result["ok"], f"{name} failed:\n{result['error']}\nbrowser console: {console(browser)}"
        details = result.get("details") or {}
        print(f"{name}: {json.dumps(details, ensure_ascii=False)}")
        return details

    run.names = browser.execute_script("return window.checkNames")
    yield run
    problems = [e["message"] for e in browser.get_log("browser")
                if e.get("level") == "SEVERE" and "WebSocket connection to" not in e.get("message", "")]
    assert not problems, "browser console errors:\n" + "\n".join(problems)


def console(driver) -> str:
    try:
        return json.dumps([entry["message"] for entry in driver.get_log("browser")][-10:], indent=1)
    except Exception as error:  # noqa: BLE001
        return f"(unavailable: {error})"


CHECKS = [
    "connect_and_heartbeat_negotiation",
    "heartbeats_flow_both_ways",
    "topic_message_headers_and_utf8_body",
    "header_escaping_round_trip",
    "header_escaping_carriage_return",
    "receipts_are_promises",
    "unsubscribe_stops_delivery",
    "queue_client_individual_ack_and_nack",
    "transaction_abort_and_commit",
    "error_frame_rejects_and_surfaces",
    "bad_login_rejects_connect",
    "disconnect_with_receipt",
]


def test_the_page_has_exactly_these_checks(interop_page):
    assert sorted(interop_page.names) == sorted(CHECKS + ["default_host_header"])


@pytest.mark.parametrize("name", CHECKS)
def test_starling_js_against_rabbitmq(interop_page, name):
    interop_page(name)


def test_default_host_header(interop_page):
    """Without `host`, starling.js sends the URL's host name (STOMP 1.2's recommendation); RabbitMQ reads `host`
    as the virtual host, so a client of RabbitMQ passes host "/" (or its vhost), as the other checks do."""
    details = interop_page("default_host_header")
    assert "127.0.0.1" in details["connect"], details  # what starling.js sends by default
    if not details["connected"]:
        assert "host" in (details.get("error", "") + (details.get("body") or "")).lower(), details
