"""starling.example.toml documents every setting with its default, and `starling check-config` validates files
without starting a server: exit 0 with a summary, or exit 1 naming the line or key."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from e2e_helpers import StarlingServer, starling_bin

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "starling.example.toml"


def setting_names() -> list[str]:
    source = (ROOT / "Sources/StarlingServer/ServerConfiguration+Settings.swift").read_text()
    block = source[source.index("public static let settings"):]
    block = block[:block.index("\n    ]")]
    names = re.findall(r'\("([a-z0-9-]+)", "', block)
    assert len(names) > 40
    return names


def check(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([starling_bin(), "check-config", str(path)], capture_output=True, text=True, timeout=30)


def uncommented(text: str) -> str:
    """The example with its defaults and its [[policy]] / [[acl]] examples switched on (not the tables that name
    files which do not exist here)."""
    lines = []
    section = "top"
    for line in text.splitlines():
        body = line[2:] if line.startswith("# ") else None
        if body is not None and re.fullmatch(r"\[\[?[a-z]+\]\]?", body.strip()):
            section = body.strip()
        if body is not None and re.match(r"^[a-z-]+ = ", body) and "..." not in body:
            if section in ("top", "[[policy]]", "[[acl]]"):
                lines.append(body)
                continue
        if body is not None and section in ("[[policy]]", "[[acl]]") and body.strip() in ("[[policy]]", "[[acl]]"):
            lines.append(body)
            continue
        lines.append(line)
    return "\n".join(lines) + "\n"


def test_example_names_every_setting_with_a_default():
    text = EXAMPLE.read_text()
    for name in setting_names():
        assert re.search(rf"^# {re.escape(name)}: ", text, re.MULTILINE), f"{name} is not documented"
        assert re.search(rf"^# {re.escape(name)} = ", text, re.MULTILINE), f"{name} has no example line"
    for table in ["[auth]", "[tls]", "[admin]", "[[policy]]", "[[acl]]"]:
        assert f"# {table}" in text, table


def test_example_and_its_defaults_are_valid(tmp_path):
    result = check(EXAMPLE)
    assert result.returncode == 0, result.stderr
    assert "is valid" in result.stdout
    live = tmp_path / "live.toml"
    live.write_text(uncommented(EXAMPLE.read_text()))
    assert "\nport = 8080\n" in live.read_text() and "\n[[policy]]\nmatch = " in live.read_text()
    result = check(live)
    assert result.returncode == 0, result.stderr + live.read_text()
    assert "policies: 1 queue, 2 topic and room" in result.stdout, result.stdout
    assert "access rules: 1" in result.stdout
    # And the server starts with it (ports from the flags win over the file's).
    server = StarlingServer(tmp_path / "data", ["--config", str(live)]).start()
    try:
        assert server.http_port and server.stomp_port
    finally:
        server.stop()


def test_check_config_names_what_is_wrong(tmp_path):
    cases = [
        ("port = 8080\nprot = 1\n", ":2: unknown key 'prot'"),
        ("max-body-size = -1\n", "max-body-size"),
        ('host = "0.0.0.0"\n', "needs an [auth] table"),
        ('[tls]\ncert-file = "/nonexistent/c.pem"\nkey-file = "/nonexistent/k.pem"\n', "cert-file '/nonexistent/c.pem': cannot read the file"),
        ('[admin]\ntoken = "short"\n', "at least 16"),
        ("[[policy]]\nmatch = \"/queue/a\"\ncolour = 1\n", "unknown policy key 'colour'"),
    ]
    for text, expected in cases:
        path = tmp_path / "bad.toml"
        path.write_text(text)
        result = check(path)
        assert result.returncode == 1, (text, result.stdout)
        assert expected in result.stderr, (text, result.stderr)
    result = check(tmp_path / "missing.toml")
    assert result.returncode == 1 and "cannot read" in result.stderr
