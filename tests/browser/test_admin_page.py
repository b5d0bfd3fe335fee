"""The admin page (web-client/admin/, served at /admin) in headless Chromium against real servers.

A server with an `[admin]` token (and queue-max-deliveries=1, so that one NACK dead-letters a message), real STOMP
clients over TCP and WebSocket (the raw helpers of tests/e2e/e2e_helpers.py) and a publisher thread making traffic:

1. the token prompt: a wrong token gets the 401 message, the right one the dashboard (kept in sessionStorage, so a
   reload does not ask again); a stored token the server refuses asks again, saying why; a token that stops working
   while the page is open (the server restarted with another one) asks again too;
2. the live rates: non-zero received/delivered per second close to what the subscriber really got, connections by
   transport, a latency estimate, and charts that gain points;
3. the connections table: the clients with their transport and user (a login full of HTML stays text), rows reused
   between refreshes, at most 200 rows and an "N more" note; Disconnect (after a confirm) ends a client: it gets
   the ERROR and its connection closes;
4. the queues table: the ready count; Purge is confirmed (Cancel keeps the messages) and empties the queue;
5. a dead-letter queue has Redrive (an ordinary queue has not), which moves its messages back;
6. the rooms table and a room's presence list;
7. the Publish form delivers the exact body and headers to a subscriber; a refusal shows the server's 422 reason; a
   bad header line is not sent;
8. a server without [admin]: the page says the API is off and how to turn it on (and still shows the live rates);
9. no JavaScript errors (window.onerror / unhandledrejection captured by the page, and the console log, where only
   the HTTP errors a test provoked on purpose are allowed).

A screenshot of the dashboard with live data goes to docs/admin-page.png with STARLING_SCREENSHOT_ADMIN=docs/admin-page.png
(otherwise to the test's temporary directory, so a test run leaves the tree clean).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import threading
import time
import urllib.parse
from pathlib import Path

import pytest

pytest.importorskip("selenium", reason="selenium is not installed (pip install -r tests/browser/requirements.txt)")

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from e2e_helpers import (  # noqa: E402  (conftest puts tests/e2e on the path)
    Closed,
    RawTcpStomp,
    RawWsStomp,
    StarlingServer,
    assert_still_alive,
    start_or_fail,
    uid,
)


REPO = Path(__file__).resolve().parents[2]
SCREENSHOT_ENV = "STARLING_SCREENSHOT_ADMIN"
TOKEN = "admin-page-T0ken-" + "x" * 16
OTHER_TOKEN = "another-T0ken-" + "y" * 16
TOKEN_KEY = "starling.admin.token"  # the page's sessionStorage key
TIMEOUT = 10
PUBLISH_INTERVAL = 0.02  # the traffic thread's SEND interval: about 50 messages/s
WORD = uid()  # names of this module's destinations and logins


# ================================================================================================== servers


def start_server(base: Path, web_root: Path, config: str | None, extra: list[str] | None = None) -> StarlingServer:
    base.mkdir(parents=True, exist_ok=True)
    args = ["--web-root", str(web_root), *(extra or [])]
    if config is not None:
        path = base / "starling.toml"
        path.write_text(config)
        args += ["--config", str(path)]
    return start_or_fail(StarlingServer(base / "data", args))


def admin_config(token: str) -> str:
    return f'[admin]\ntoken = "{token}"\n'


@pytest.fixture(scope="module")
def admin_server(tmp_path_factory, web_root):
    srv = start_server(tmp_path_factory.mktemp("starling-admin-page"), web_root, admin_config(TOKEN),
                       ["--set", "queue-max-deliveries=1"])
    yield srv
    srv.stop()


@pytest.fixture(autouse=True)
def _server_alive(request):
    yield
    assert_still_alive(request, "admin_server")


# ================================================================================================== the admin API


def api(srv: StarlingServer, method: str, path: str, body=None, token: str | None = TOKEN) -> tuple[int, object]:
    conn = http.client.HTTPConnection("127.0.0.1", srv.http_port, timeout=10)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    try:
        conn.request(method, path, body=data, headers=headers)
        response = conn.getresponse()
        payload = response.read()
    finally:
        conn.close()
    return response.status, json.loads(payload) if payload else None


def queue_state(srv, name: str) -> tuple[int, object]:
    return api(srv, "GET", "/api/v1/queues/" + urllib.parse.quote(name, safe=""))


def publish(srv, destination: str, body: str, headers: dict | None = None) -> None:
    payload = {"destination": destination, "body": body}
    if headers:
        payload["headers"] = headers
    assert api(srv, "POST", "/api/v1/publish", payload) == (200, {"published": destination})


def wait_until(predicate, what: str, timeout: float = TIMEOUT):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


# ================================================================================================== STOMP clients


class Clients:
    """Raw STOMP clients, closed at teardown."""

    def __init__(self, srv: StarlingServer):
        self.srv = srv
        self.open: list = []

    def _connect(self, client, login: str | None):
        extra = [("login", login), ("passcode", "secret")] if login is not None else []
        frame = client.connect("1.2", extra=extra)
        assert frame.command == "CONNECTED", frame
        client.session = frame.headers["session"]
        self.open.append(client)
        return client

    def tcp(self, login: str | None = None) -> RawTcpStomp:
        return self._connect(RawTcpStomp(self.srv.stomp_port), login)

    def ws(self, login: str | None = None) -> RawWsStomp:
        return self._connect(RawWsStomp(self.srv.ws_url, compression="deflate"), login)

    def close(self):
        for client in self.open:
            client.close()
        self.open.clear()


@pytest.fixture
def clients(admin_server):
    made = Clients(admin_server)
    yield made
    made.close()


def subscribe(client, destination: str, sub_id: str = "s", **headers) -> None:
    receipt = "r-" + uid()
    client.send_frame("SUBSCRIBE", [("destination", destination), ("id", sub_id), ("receipt", receipt),
                                    *headers.items()])
    frame = client.recv_until("RECEIPT")
    assert frame.command == "RECEIPT" and frame.headers.get("receipt-id") == receipt, frame


class Traffic:
    """A publisher (TCP, about 50 messages/s to a topic) and a subscriber (WebSocket with deflate) that counts what
    it gets, each in its own thread, for as long as the module runs."""

    def __init__(self, srv: StarlingServer):
        self.topic = f"/topic/ticks.{WORD}"
        self.sub = RawWsStomp(srv.ws_url, compression="deflate")
        assert self.sub.connect("1.2", extra=[("login", f"watcher-{WORD}"), ("passcode", "x")]).command == "CONNECTED"
        subscribe(self.sub, self.topic)
        self.pub = RawTcpStomp(srv.stomp_port)
        assert self.pub.connect("1.2", extra=[("login", f"publisher-{WORD}"), ("passcode", "x")]).command == "CONNECTED"
        self.sent = 0
        self.received = 0
        self.problem: str | None = None
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._publish, daemon=True),
                        threading.Thread(target=self._drain, daemon=True)]
        for thread in self.threads:
            thread.start()

    def _publish(self):
        try:
            while not self.stop.is_set():
                self.pub.send_frame("SEND", [("destination", self.topic)], b"tick %d" % self.sent)
                self.sent += 1
                self.stop.wait(PUBLISH_INTERVAL)
        except OSError as error:
            self.problem = f"publisher: {error}"

    def _drain(self):
        while not self.stop.is_set():
            try:
                frame = self.sub.recv_frame(0.5)
            except TimeoutError:
                continue
            except Closed:
                self.problem = "the subscriber's connection closed"
                return
            if frame.command == "MESSAGE":
                self.received += 1
            else:
                self.problem = f"subscriber got {frame!r}"

    def close(self):
        self.stop.set()
        for thread in self.threads:
            thread.join(3)
        self.pub.close()
        self.sub.close()


@pytest.fixture(scope="module")
def traffic(admin_server):
    t = Traffic(admin_server)
    yield t
    t.close()
    assert t.problem is None, t.problem


# ================================================================================================== the page


@pytest.fixture
def allow_http():
    """HTTP statuses of /api/ requests that a test provokes on purpose: Chromium logs every 4xx fetch as a console
    error ("Failed to load resource"); those are expected, every other console error fails the test.
    "connection-refused": requests made while the test restarts the server."""
    return set()


@pytest.fixture(autouse=True)
def _no_browser_errors(request, allow_http):
    yield
    if "browser" not in request.fixturenames:
        return
    driver = request.getfixturevalue("browser")
    allowed = allow_http
    problems = []
    try:
        page_errors = driver.execute_script("return window.adminDebug ? window.adminDebug.jsErrors : []")
        entries = driver.get_log("browser")
    except Exception as error:  # noqa: BLE001
        pytest.fail(f"cannot read the browser's state: {error}")
    problems += [f"page error: {e}" for e in page_errors]
    for entry in entries:
        message = entry.get("message", "")
        if entry.get("level") != "SEVERE":
            continue
        status = re.search(r"/api/v1/\S* - Failed to load resource: the server responded with a status of (\d+)", message)
        if entry.get("source") == "network" and status and int(status.group(1)) in allowed:
            continue
        if "/favicon.ico - " in message:
            continue  # Chromium asks for it on open_dashboard's first stop (/favicon.svg, a non-HTML page)
        if "connection-refused" in allowed and "net::ERR_CONNECTION_REFUSED" in message:
            continue  # a test that restarts the server on purpose
        problems.append(message)
    assert not problems, "browser console errors:\n" + "\n".join(problems)


def wait(driver, predicate, what: str, timeout: float = TIMEOUT):
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: predicate(d))
    except Exception as error:  # noqa: BLE001 - re-raised with the page's state
        raise AssertionError(f"timed out waiting for {what}; page state: {page_state(driver)}") from error


def page_state(driver) -> str:
    try:
        state = driver.execute_script("""
            const d = window.adminDebug;
            const shown = [...document.querySelectorAll('.error, .notice, #pub-result')]
              .filter(e => !e.hidden && e.textContent).map(e => `${e.id}: ${e.textContent}`);
            return { mode: d?.mode, scrapes: d?.scrapes, refreshes: d?.tableRefreshes, last: d?.last,
                     shownErrors: d?.shownErrors, jsErrors: d?.jsErrors, visible: shown };""")
        return json.dumps(state, indent=1, default=str)
    except Exception as error:  # noqa: BLE001
        return f"(unavailable: {error})"


def mode(driver) -> str | None:
    return driver.execute_script("return document.body.dataset.mode || null")


def open_dashboard(driver, srv: StarlingServer) -> None:
    """The dashboard of `srv`, signed in: the token is put in sessionStorage before the page loads (so that it never
    asks, and no 401 shows in the console)."""
    base = f"http://127.0.0.1:{srv.http_port}"
    if driver.current_url.startswith(base + "/admin") and mode(driver) == "dashboard":
        return
    driver.get(base + "/favicon.svg")
    driver.execute_script("sessionStorage.setItem(arguments[0], arguments[1])", TOKEN_KEY, TOKEN)
    driver.get(base + "/admin")
    wait(driver, lambda d: mode(d) == "dashboard" and d.execute_script("return window.adminDebug.tableRefreshes") >= 1,
         "the dashboard")


def refreshed(driver, count: int = 1) -> None:
    """Waits for `count` complete refreshes of the tables from now on."""
    start = driver.execute_script("return window.adminDebug.tableRefreshes")
    wait(driver, lambda d: d.execute_script("return window.adminDebug.tableRefreshes") >= start + count,
         f"{count} table refreshes")


def rows(driver, table: str) -> dict[str, list[str]]:
    """The rows of a table: key -> the text of each cell."""
    return driver.execute_script("""
        const out = {};
        for (const tr of document.querySelectorAll(`#${arguments[0]} tbody tr`)) {
          if (tr.dataset.key !== undefined) out[tr.dataset.key] = [...tr.children].map(td => td.textContent);
        }
        return out;""", table)


def row_button(driver, table: str, key: str, label: str):
    return driver.execute_script("""
        const [table, key, label] = arguments;
        const tr = [...document.querySelectorAll(`#${table} tbody tr`)].find(t => t.dataset.key === key);
        return tr ? [...tr.querySelectorAll('button')].find(b => b.textContent === label) || null : null;""",
                                 table, key, label)


def text(driver, element_id: str) -> str:
    return driver.execute_script("const e = document.getElementById(arguments[0]); return e.hidden ? '' : e.textContent",
                                 element_id)


def confirm(driver, answer: str = "ok") -> str:
    """Answers the page's confirmation dialog; returns its question."""
    wait(driver, lambda d: d.execute_script("return document.getElementById('confirm').open"), "the confirm dialog")
    question = driver.find_element(By.ID, "confirm-text").text
    driver.find_element(By.ID, f"confirm-{answer}").click()
    wait(driver, lambda d: not d.execute_script("return document.getElementById('confirm').open"), "the dialog to close")
    return question


def number(s: str) -> float:
    return float(s.replace(",", "").split()[0])


# ================================================================================================== 1. the token


def test_token_prompt_wrong_and_right_token(browser, admin_server, allow_http):
    allow_http.add(401)
    base = f"http://127.0.0.1:{admin_server.http_port}"
    browser.get(base + "/favicon.svg")
    browser.execute_script("sessionStorage.clear()")
    browser.get(base + "/admin")
    wait(browser, lambda d: mode(d) == "login", "the token prompt")
    field = browser.find_element(By.ID, "token")
    assert field.get_attribute("type") == "password"
    assert field.is_displayed() and not browser.find_element(By.ID, "main").is_displayed()
    assert text(browser, "login-error") == ""  # no token yet is not an error

    field.send_keys("wrong-token-" + "z" * 20)
    browser.find_element(By.ID, "login-submit").click()
    wait(browser, lambda d: text(d, "login-error"), "the 401 message")
    message = text(browser, "login-error")
    assert "401" in message and "refused" in message, message
    assert mode(browser) == "login"
    assert browser.execute_script("return sessionStorage.getItem(arguments[0])", TOKEN_KEY) is None

    field = browser.find_element(By.ID, "token")
    field.send_keys(TOKEN)
    browser.find_element(By.ID, "login-submit").click()
    wait(browser, lambda d: mode(d) == "dashboard", "the dashboard")
    assert not browser.find_element(By.ID, "login").is_displayed()
    assert browser.find_element(By.ID, "connections-card").is_displayed()
    assert text(browser, "login-error") == ""
    assert browser.execute_script("return sessionStorage.getItem(arguments[0])", TOKEN_KEY) == TOKEN
    wait(browser, lambda d: d.execute_script("return window.adminDebug.tableRefreshes") >= 1, "the tables")
    assert browser.execute_script("return window.adminDebug.shownErrors") == [message]

    # A reload keeps the token (sessionStorage): no prompt.
    browser.refresh()
    wait(browser, lambda d: mode(d) == "dashboard" and d.execute_script("return window.adminDebug.tableRefreshes") >= 1,
         "the dashboard after a reload")
    assert browser.execute_script("return window.adminDebug.shownErrors") == []

    # A stored token the server refuses: asked again, with the reason.
    browser.execute_script("sessionStorage.setItem(arguments[0], 'stale-token-' + 'q'.repeat(20))", TOKEN_KEY)
    browser.refresh()
    wait(browser, lambda d: mode(d) == "login" and text(d, "login-error"), "the prompt for a refused stored token")
    assert "401" in text(browser, "login-error")
    assert browser.execute_script("return sessionStorage.getItem(arguments[0])", TOKEN_KEY) is None


def test_token_that_stops_working_asks_again(browser, tmp_path, web_root, allow_http):
    """The server restarts with another token while the page is open: the next refresh gets 401, the page forgets the
    token and asks for it, saying why."""
    allow_http.update({401, "connection-refused"})
    srv = start_server(tmp_path / "a", web_root, admin_config(TOKEN))
    try:
        open_dashboard(browser, srv)
        port = srv.http_port
        srv.stop()
        srv = start_server(tmp_path / "b", web_root, admin_config(OTHER_TOKEN), ["--port", str(port)])
        wait(browser, lambda d: mode(d) == "login", "the token prompt after the token changed", timeout=15)
        message = text(browser, "login-error")
        assert "401" in message and "again" in message, message
        assert browser.execute_script("return sessionStorage.getItem(arguments[0])", TOKEN_KEY) is None
        browser.find_element(By.ID, "token").send_keys(OTHER_TOKEN)
        browser.find_element(By.ID, "login-submit").click()
        wait(browser, lambda d: mode(d) == "dashboard" and d.execute_script("return window.adminDebug.tableRefreshes") >= 1,
             "the dashboard with the new token")
    finally:
        browser.get("about:blank")  # no more requests to the server about to stop
        srv.stop()


# ================================================================================================== 2. live rates


def test_live_rates_and_charts(browser, admin_server, traffic):
    open_dashboard(browser, admin_server)
    # Two scrapes with traffic between them give the first rates.
    wait(browser, lambda d: (d.execute_script("return window.adminDebug.last") or {}).get("delivered"),
         "a non-zero delivered/s")
    first_points = int(browser.find_element(By.CSS_SELECTOR, "#chart-messages svg").get_attribute("data-points"))

    # The page's rates against what the threads measured over the same few seconds.
    scrapes = browser.execute_script("return window.adminDebug.scrapes")
    sent0, received0, t0 = traffic.sent, traffic.received, time.monotonic()
    wait(browser, lambda d: d.execute_script("return window.adminDebug.scrapes") >= scrapes + 2, "two more scrapes")
    sent_rate = (traffic.sent - sent0) / (time.monotonic() - t0)
    received_rate = (traffic.received - received0) / (time.monotonic() - t0)
    last = browser.execute_script("return window.adminDebug.last")
    assert sent_rate > 10 and received_rate > 10, (sent_rate, received_rate)
    assert 0.4 * sent_rate < last["received"] < 2.5 * sent_rate, (last, sent_rate)
    assert 0.4 * received_rate < last["delivered"] < 2.5 * received_rate, (last, received_rate)
    # What the tiles show is that sample.
    assert number(text(browser, "stat-delivered")) > 0
    assert number(text(browser, "stat-received")) > 0
    assert last["p50"] is not None and last["p99"] is not None and 0 < last["p50"] <= last["p99"] < 5, last
    assert re.search(r"\d", text(browser, "stat-p50")) and re.search(r"\d", text(browser, "stat-p99"))
    assert number(text(browser, "stat-bytes-out")) > 0
    # The publisher (tcp) and the subscriber (ws+deflate) at least.
    transports = text(browser, "stat-transports")
    assert re.search(r"\btcp [1-9]", transports) and re.search(r"ws\+deflate [1-9]", transports), transports
    assert last["connections"] >= 2 and last["sessions"] >= 2, last
    assert text(browser, "stat-errors") == "0" and text(browser, "stat-limits") == "0"

    # The charts keep gaining points.
    wait(browser, lambda d: int(d.find_element(By.CSS_SELECTOR, "#chart-messages svg").get_attribute("data-points"))
         >= first_points + 2, "the messages chart to gain points")
    d = browser.find_element(By.CSS_SELECTOR, '#chart-messages path[data-series="delivered"]').get_attribute("d")
    assert d.count("L") >= 2, d
    for chart in ("connections", "network", "latency", "problems"):
        points = browser.find_element(By.CSS_SELECTOR, f"#chart-{chart} svg").get_attribute("data-points")
        assert int(points) >= 2, (chart, points)
    assert text(browser, "metrics-error") == ""


# ================================================================================================== 3. connections


def test_connections_table_and_disconnect(browser, admin_server, clients):
    tcp = clients.tcp(f"tcp-{WORD}")
    ws = clients.ws(f"ws-{WORD}")
    subscribe(ws, f"/topic/conn.{WORD}")
    html_login = f'<img src=x onerror="window.__xss=1">{WORD}'
    sneaky = clients.tcp(html_login)
    open_dashboard(browser, admin_server)
    wait(browser, lambda d: {tcp.session, ws.session, sneaky.session} <= rows(d, "connections-table").keys(),
         "the test's clients in the table")
    table = rows(browser, "connections-table")
    assert table[tcp.session][:6] == [tcp.session, "tcp", "127.0.0.1", f"tcp-{WORD}", "1.2", "0"]
    assert table[ws.session][:6] == [ws.session, "ws+deflate", "127.0.0.1", f"ws-{WORD}", "1.2", "1"]
    # Text, never markup.
    assert table[sneaky.session][3] == html_login
    assert browser.execute_script("return document.querySelectorAll('#connections-table img').length") == 0
    assert browser.execute_script("return window.__xss") is None
    total = api(admin_server, "GET", "/api/v1/connections")[1]["total"]
    assert text(browser, "connections-count") == f"({total})"

    # A refresh reuses the rows (no rebuilt DOM).
    browser.execute_script("""[...document.querySelectorAll('#connections-table tbody tr')]
                              .find(t => t.dataset.key === arguments[0]).marked = true""", ws.session)
    refreshed(browser)
    assert browser.execute_script("""return [...document.querySelectorAll('#connections-table tbody tr')]
                                     .find(t => t.dataset.key === arguments[0]).marked === true""", ws.session)

    # Disconnect: confirmed, the client gets the ERROR and is closed, the row goes.
    row_button(browser, "connections-table", tcp.session, "Disconnect").click()
    question = confirm(browser)
    assert tcp.session in question and f"tcp-{WORD}" in question, question
    frame = tcp.recv_frame(TIMEOUT)
    assert frame.command == "ERROR" and frame.headers.get("message") == "disconnected by an administrator", frame
    tcp.wait_closed(TIMEOUT)
    wait(browser, lambda d: text(d, "connections-notice") == f"Disconnected session {tcp.session}.", "the notice")
    wait(browser, lambda d: tcp.session not in rows(d, "connections-table"), "the row to go")
    assert ws.session in rows(browser, "connections-table")
    assert api(admin_server, "DELETE", f"/api/v1/connections/{tcp.session}")[0] == 404
    # The other client is untouched.
    ws.send_frame("SEND", [("destination", f"/topic/conn.{WORD}"), ("receipt", "still")], b"alive")
    assert ws.recv_until("RECEIPT").command == "RECEIPT"


def test_connections_table_shows_at_most_200_rows(browser, admin_server, clients):
    extra = 210
    for _ in range(extra):
        clients.tcp(f"bulk-{WORD}")
    open_dashboard(browser, admin_server)
    total = api(admin_server, "GET", "/api/v1/connections?limit=1")[1]["total"]
    assert total >= extra
    wait(browser, lambda d: text(d, "connections-count") == f"({total})", "the new total")
    assert len(rows(browser, "connections-table")) == 200
    assert text(browser, "connections-more") == f"{total - 200} more connections not shown (showing 200)"
    # The user filter asks the API for one login.
    field = browser.find_element(By.ID, "user-filter")
    field.send_keys(f"bulk-{WORD}")
    wait(browser, lambda d: text(d, "connections-count") == f"({extra} for bulk-{WORD})", "the filtered count")
    assert {r[3] for r in rows(browser, "connections-table").values()} == {f"bulk-{WORD}"}
    browser.execute_script("""const f = document.getElementById('user-filter');
                              f.value = ''; f.dispatchEvent(new Event('input'));""")
    clients.close()
    wait(browser, lambda d: text(d, "connections-more") == "" and len(rows(d, "connections-table")) < 100,
         "the table to shrink")


# ================================================================================================== 4, 5. queues


def test_queue_ready_count_and_purge(browser, admin_server):
    queue = f"/queue/jobs.{WORD}"
    for i in range(5):
        publish(admin_server, queue, f"job {i}")
    open_dashboard(browser, admin_server)
    wait(browser, lambda d: rows(d, "queues-table").get(queue, [None])[:4] == [queue, "5", "0", "0"], "the queue row")
    assert row_button(browser, "queues-table", queue, "Redrive") is None  # not a dead-letter queue

    # Cancel keeps the messages.
    row_button(browser, "queues-table", queue, "Purge").click()
    assert queue in confirm(browser, "cancel")
    refreshed(browser)
    assert queue_state(admin_server, queue) == (200, {"name": queue, "ready": 5, "unacked": 0, "consumers": 0})

    row_button(browser, "queues-table", queue, "Purge").click()
    question = confirm(browser)
    assert queue in question and "5 ready" in question, question
    wait(browser, lambda d: text(d, "queues-notice") == f"Purged 5 messages from {queue}.", "the purge notice")
    status, state = queue_state(admin_server, queue)
    assert status == 404 or state["ready"] == 0, (status, state)
    wait(browser, lambda d: rows(d, "queues-table").get(queue, [queue, "0"])[1] == "0", "the row to empty")


def test_dead_letter_queue_redrive(browser, admin_server, clients):
    queue = f"/queue/orders.{WORD}"
    dlq = queue + ".dlq"
    for i in range(3):
        publish(admin_server, queue, f"order {i}")
    worker = clients.tcp(f"worker-{WORD}")
    subscribe(worker, queue, ack="client-individual")
    for _ in range(3):
        message = worker.recv_until("MESSAGE")
        assert message.command == "MESSAGE", message
        worker.send_frame("NACK", {"id": message.headers["ack"]})
    wait_until(lambda: queue_state(admin_server, dlq)[1].get("ready") == 3, "3 dead letters")
    worker.close()  # no consumer: redriven messages stay ready

    open_dashboard(browser, admin_server)
    wait(browser, lambda d: rows(d, "queues-table").get(dlq, [None])[:2] == [dlq, "3"], "the dead-letter queue row")
    redrive = row_button(browser, "queues-table", dlq, "Redrive")
    assert redrive is not None
    redrive.click()
    assert dlq in confirm(browser)
    wait(browser, lambda d: text(d, "queues-notice") == f"Moved 3 messages from {dlq} back.", "the redrive notice")
    assert queue_state(admin_server, queue) == (200, {"name": queue, "ready": 3, "unacked": 0, "consumers": 0})
    status, state = queue_state(admin_server, dlq)
    assert status == 404 or state["ready"] == 0, (status, state)
    wait(browser, lambda d: rows(d, "queues-table").get(queue, [None])[:2] == [queue, "3"], "the queue row refilled")


# ================================================================================================== 6. rooms


def test_rooms_and_presence(browser, admin_server, clients):
    word = f"lobby-{WORD}"
    room = f"/room/{word}"
    member = clients.tcp(f"roomie-{WORD}")
    subscribe(member, room, **{"x-presence-status": "online"})
    publish(admin_server, room, "welcome")
    open_dashboard(browser, admin_server)
    wait(browser, lambda d: rows(d, "rooms-table").get(room) == [word, "1", "1", "1"], "the room row")
    button = browser.execute_script("""return [...document.querySelectorAll('#rooms-table tbody tr')]
                                       .find(t => t.dataset.key === arguments[0]).querySelector('button')""", room)
    button.click()
    wait(browser, lambda d: d.execute_script(
        "return [...document.querySelectorAll('#presence-list li')].map(li => li.dataset.user)") == [f"roomie-{WORD}"],
         "the presence list")
    assert text(browser, "presence-room") == room
    entry = browser.find_element(By.CSS_SELECTOR, "#presence-list li").text
    assert f"roomie-{WORD}" in entry and "1 connection" in entry and "status=online" in entry, entry
    assert button.get_attribute("aria-pressed") == "true"
    # A second member shows up on the next refresh; a member who leaves goes.
    other = clients.ws(f"guest-{WORD}")
    subscribe(other, room)
    wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#presence-list li")) == 2, "the second member")
    assert rows(browser, "rooms-table")[room][1] == "2"
    other.close()
    wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#presence-list li")) == 1, "the member to leave")
    assert f"/room/{word}" in rows(browser, "destinations-table")


# ================================================================================================== 7. publish


def test_publish_form(browser, admin_server, clients, allow_http):
    allow_http.add(422)
    topic = f"/topic/form.{WORD}"
    listener = clients.tcp(f"listener-{WORD}")
    subscribe(listener, topic)
    open_dashboard(browser, admin_server)
    body = "héllo <b>wörld</b> & 'quotes' \"too\"\nsecond line"
    browser.find_element(By.ID, "pub-destination").send_keys(topic)
    browser.find_element(By.ID, "pub-body").send_keys(body)
    browser.find_element(By.ID, "pub-headers").send_keys("x-test = abc\n\ncontent-type=text/plain")
    browser.find_element(By.ID, "pub-submit").click()
    frame = listener.recv_until("MESSAGE", TIMEOUT)
    assert frame.command == "MESSAGE", frame
    assert frame.body == body.encode("utf-8")
    assert (frame.headers["destination"], frame.headers["x-test"], frame.headers["content-type"]) == (
        topic, "abc", "text/plain"), frame
    wait(browser, lambda d: text(d, "pub-result").startswith(f"Published to {topic} at "), "the result")
    assert text(browser, "pub-error") == ""

    # A refusal: the server's reason.
    field = browser.find_element(By.ID, "pub-destination")
    field.clear()
    field.send_keys("/nowhere/x")
    browser.find_element(By.ID, "pub-submit").click()
    wait(browser, lambda d: text(d, "pub-error"), "the refusal")
    status, answer = api(admin_server, "POST", "/api/v1/publish", {"destination": "/nowhere/x", "body": "b"})
    assert status == 422
    assert text(browser, "pub-error") == f"Refused: {answer['reason']}"
    assert text(browser, "pub-result") == ""

    # A header line without '=': not sent at all.
    field.clear()
    field.send_keys(topic)
    headers = browser.find_element(By.ID, "pub-headers")
    headers.clear()
    headers.send_keys("no equals sign here")
    browser.find_element(By.ID, "pub-submit").click()
    wait(browser, lambda d: "not key=value" in text(d, "pub-error"), "the header error")
    assert listener.drain(0.5) == []


# ================================================================================================== screenshot


def test_screenshot(browser, admin_server, traffic, clients):
    """Some of everything on screen, then a screenshot of the whole page."""
    clients.tcp(f"alice-{WORD}")
    ws = clients.ws(f"bob-{WORD}")
    subscribe(ws, "/room/lobby", **{"x-presence-status": "online"})
    publish(admin_server, "/room/lobby", "hello")
    for i in range(4):
        publish(admin_server, f"/queue/emails.{WORD}", f"mail {i}")
    open_dashboard(browser, admin_server)
    wait(browser, lambda d: "/room/lobby" in rows(d, "rooms-table") and f"/queue/emails.{WORD}" in rows(d, "queues-table"),
         "the room and the queue")
    browser.execute_script("""[...document.querySelectorAll('#rooms-table tbody tr')]
                              .find(t => t.dataset.key === '/room/lobby').querySelector('button').click()""")
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#presence-list li"), "the presence list")
    browser.execute_script("""
        for (const [id, value] of [['pub-destination', '/room/lobby'], ['pub-body', 'Maintenance at 18:00 UTC'],
                                   ['pub-headers', 'x-topic=ops']]) document.getElementById(id).value = value;""")
    browser.find_element(By.ID, "pub-submit").click()
    wait(browser, lambda d: text(d, "pub-result").startswith("Published to /room/lobby"), "the publish result")
    wait_until(lambda: any(f.command == "MESSAGE" and f.body == b"Maintenance at 18:00 UTC" for f in ws.drain(0.2)),
               "the published message")
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1280, max(900, min(height + 140, 2400)))
    refreshed(browser)
    target = os.environ.get(SCREENSHOT_ENV)
    path = (REPO / target) if target else Path(os.environ.get("TMPDIR", "/tmp")) / f"admin-page-{WORD}.png"
    assert browser.save_screenshot(str(path)), path
    assert path.stat().st_size > 10_000
    browser.set_window_size(1280, 800)


# ================================================================================================== 8. API off


def test_page_says_when_the_api_is_disabled(browser, tmp_path, web_root, allow_http):
    allow_http.add(404)
    srv = start_server(tmp_path / "off", web_root, None)
    try:
        browser.get(f"http://127.0.0.1:{srv.http_port}/admin")
        wait(browser, lambda d: mode(d) == "disabled", "the 'disabled' panel")
        panel = browser.find_element(By.ID, "disabled")
        assert panel.is_displayed()
        assert "The admin API is off" in panel.text and "[admin]" in panel.text and "token" in panel.text
        assert "the admin API is off: set [admin] token in the config file" in panel.text  # the server's reason
        assert not browser.find_element(By.ID, "login").is_displayed()
        assert not browser.find_element(By.ID, "tables").is_displayed()
        # /metrics needs no token: the live rates still work.
        wait(browser, lambda d: d.execute_script("return window.adminDebug.scrapes") >= 2, "two scrapes")
        assert browser.find_element(By.ID, "live").is_displayed()
        assert text(browser, "stat-connections") != "–"
        assert text(browser, "status") == "admin API off"
    finally:
        browser.get("about:blank")  # no more requests to the server about to stop
        srv.stop()
