"""Fixtures for the browser tests: headless Chromium (selenium + chromedriver) against a real Starling server
that serves web-client/ plus this directory's unit-test page.

Needs: apt-get install -y chromium chromium-driver; pip install selenium (and tests/requirements.txt).
Run from the repository root:  STARLING_BIN=/path/to/starling python -m pytest -q tests/browser
Skipped, with the reason, when selenium, chromium or chromedriver is missing.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))

from e2e_helpers import StarlingServer, start_or_fail  # noqa: E402

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    SELENIUM_ERROR = None
except ImportError as error:  # pragma: no cover - depends on the machine
    SELENIUM_ERROR = f"selenium is not installed ({error}); pip install selenium"


def _find(*names: str) -> str | None:
    for name in names:
        if os.path.isabs(name) and os.access(name, os.X_OK):
            return name
        found = shutil.which(name)
        if found:
            return found
    return None


CHROMIUM = _find(*(n for n in (os.environ.get("CHROMIUM_BIN"), "chromium", "chromium-browser", "google-chrome") if n))
CHROMEDRIVER = _find(*(n for n in (os.environ.get("CHROMEDRIVER_BIN"), "chromedriver", "/usr/lib/chromium/chromedriver") if n))


def _skip_reason() -> str | None:
    if SELENIUM_ERROR:
        return SELENIUM_ERROR
    if not CHROMIUM:
        return "chromium not found (apt-get install -y chromium chromium-driver, or set CHROMIUM_BIN)"
    if not CHROMEDRIVER:
        return "chromedriver not found (apt-get install -y chromium-driver, or set CHROMEDRIVER_BIN)"
    return None


def pytest_collection_modifyitems(config, items):
    reason = _skip_reason()
    if not reason:
        return
    if os.environ.get("STARLING_REQUIRE_BROWSER") == "1":
        # CI installs Chromium: there a missing browser is a failure, not a skip.
        raise pytest.UsageError(f"browser tests required (STARLING_REQUIRE_BROWSER=1) but cannot run: {reason}")
    marker = pytest.mark.skip(reason=reason)
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(marker)


@pytest.fixture(scope="session")
def web_root(tmp_path_factory) -> Path:
    """web-client/ plus the unit-test page, as one directory (the server reads its web root at start)."""
    root = tmp_path_factory.mktemp("web-root")
    shutil.copytree(REPO / "web-client", root, dirs_exist_ok=True)
    for name in ("client_tests.html", "client_tests.js"):
        shutil.copy(HERE / name, root / name)
    return root


class Server:
    """A Starling server that can be restarted on the same port (same data directory)."""

    def __init__(self, data_dir: Path, web_root: Path):
        self.data_dir = data_dir
        self.web_root = web_root
        self.proc: StarlingServer | None = None
        self.port: int | None = None

    def start(self) -> "Server":
        args = ["--web-root", str(self.web_root)]
        if self.port:
            args += ["--port", str(self.port)]  # the last --port wins over the helper's "--port 0"
        srv = start_or_fail(StarlingServer(self.data_dir, args))
        self.proc = srv
        self.port = srv.http_port
        return self

    def stop(self) -> None:
        if self.proc:
            self.proc.stop()

    def restart(self, data_dir: Path | None = None) -> None:
        """Stops and starts again on the same port; with `data_dir`, as a server that lost its state."""
        self.stop()
        if data_dir is not None:
            self.data_dir = data_dir
        self.start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def server(tmp_path_factory, web_root):
    if _skip_reason():
        pytest.skip(_skip_reason())
    srv = Server(tmp_path_factory.mktemp("starling-browser"), web_root).start()
    yield srv
    srv.stop()


@pytest.fixture
def own_server(tmp_path_factory, web_root):
    """A server for one test (e.g. one that restarts it)."""
    started = []

    def make() -> Server:
        srv = Server(tmp_path_factory.mktemp("starling-browser-own"), web_root).start()
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop()


def _new_driver():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,800",
                "--disable-extensions", "--no-first-run", "--lang=en-US", "--force-device-scale-factor=1"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)


@pytest.fixture(scope="module")
def browsers():
    """Two independent headless Chromium sessions (alice and bob)."""
    if _skip_reason():
        pytest.skip(_skip_reason())
    drivers = [_new_driver(), _new_driver()]
    yield drivers
    for driver in drivers:
        try:
            driver.quit()
        except Exception:  # noqa: BLE001 - best effort at teardown
            pass


@pytest.fixture(autouse=True)
def _no_page_errors(request):
    """Fails a test whose pages logged an uncaught exception or a failed module load."""
    yield
    if "browsers" not in request.fixturenames:
        return
    problems = []
    for driver in request.getfixturevalue("browsers"):
        try:
            entries = driver.get_log("browser")
        except Exception:  # noqa: BLE001 - a driver that died already failed the test
            continue
        for entry in entries:
            message = entry.get("message", "")
            if entry.get("level") == "SEVERE" and "WebSocket connection to" not in message:
                problems.append(message)
    assert not problems, "browser console errors:\n" + "\n".join(problems)


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium session (for pages that need a single browser, e.g. test_interop_rabbitmq.py)."""
    if _skip_reason():
        pytest.skip(_skip_reason())
    driver = _new_driver()
    yield driver
    try:
        driver.quit()
    except Exception:  # noqa: BLE001 - best effort at teardown
        pass
