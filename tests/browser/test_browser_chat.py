"""The web client in headless Chromium against a real Starling server (see conftest.py for what it needs).

* the starling.js unit tests (codec, heart-beats, Presence, rooms against a fake server) run in the browser;
* two browser sessions chat in one room: messages both ways, the member list, typing indicators, history;
* the server restarts under an open page: it reconnects, resumes (or reloads and says so) and chats on;
* a screenshot of the chat page with two members (to docs/chat.png with STARLING_SCREENSHOT=docs/chat.png, which
  is how the README's picture is made; otherwise to the test's temporary directory, so a test run leaves the tree
  clean).
"""

from __future__ import annotations

import os

import json
import uuid
from pathlib import Path

import pytest

pytest.importorskip("selenium", reason="selenium is not installed (pip install -r tests/browser/requirements.txt)")

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SCREENSHOT_ENV = "STARLING_SCREENSHOT"
TIMEOUT = 10


def room_name(prefix: str = "room") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def wait(driver, predicate, what: str, timeout: float = TIMEOUT):
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.05).until(lambda d: predicate(d))
    except Exception as error:  # noqa: BLE001 - re-raised with the page's state
        raise AssertionError(f"timed out waiting for {what}; page state: {page_state(driver)}") from error


def page_state(driver) -> str:
    try:
        state = driver.execute_script(
            "return { connection: document.body.dataset.connection, room: window.starlingChat?.current,"
            " items: [...document.querySelectorAll('#messages li')].map(li => li.className + ': ' + li.textContent),"
            " members: [...document.querySelectorAll('#member-list li')].map(li => li.textContent) }")
        logs = [entry["message"] for entry in driver.get_log("browser")][-10:]
        return json.dumps({**state, "console": logs}, indent=1)
    except Exception as error:  # noqa: BLE001
        return f"(unavailable: {error})"


def open_chat(driver, server, name: str, room: str, *more_rooms: str) -> None:
    driver.get(f"{server.base}/?name={name}&room={','.join((room, *more_rooms))}")
    wait(driver, lambda d: d.execute_script("return document.body.dataset.connection") == "connected", f"{name} to connect")
    wait(driver, lambda d: d.execute_script("return window.starlingChat.views.get(arguments[0])?.room.joined === true", room),
         f"{name} to join #{room}")


def messages(driver) -> list[tuple[str, str, bool]]:
    return [tuple(m) for m in driver.execute_script(
        "return [...document.querySelectorAll('#messages li.message')].map(li =>"
        " [li.querySelector('.author').textContent, li.querySelector('.body').textContent, li.classList.contains('history')])")]


def notices(driver) -> list[str]:
    return driver.execute_script("return [...document.querySelectorAll('#messages li.notice, #messages li.divider')].map(li => li.textContent)")


def members(driver) -> dict[str, str]:
    """user -> status shown (online, away, offline, typing)."""
    rows = driver.execute_script(
        "return [...document.querySelectorAll('#member-list li')].map(li =>"
        " [li.dataset.user, li.classList.contains('is-typing') ? 'typing' : li.dataset.status])")
    return dict(rows)


def say(driver, text: str) -> None:
    box = driver.find_element(By.ID, "text")
    box.send_keys(text)
    box.send_keys(Keys.ENTER)


def has_message(author: str, body: str):
    return lambda d: any(m[0] == author and m[1] == body for m in messages(d))


# --------------------------------------------------------------------------------------------------


def test_client_unit_tests_in_browser(server, browsers):
    driver = browsers[0]
    driver.get(f"{server.base}/client_tests.html")
    wait(driver, lambda d: d.execute_script("return document.body.dataset.status") in ("passed", "failed"), "the unit tests", 30)
    report = driver.execute_script("return window.testReport")
    failures = [f"{r['name']}: {r.get('error')}" for r in report["results"] if not r["ok"]]
    assert not failures, "\n\n".join(failures)
    assert report["total"] >= 15 and report["passed"] == report["total"]


def test_two_browsers_chat_in_one_room(server, browsers):
    alice, bob = browsers
    room = room_name("chat")
    open_chat(alice, server, "alice", room)
    say(alice, "first, before bob came")
    wait(alice, has_message("alice", "first, before bob came"), "alice's own message")
    open_chat(bob, server, "bob", room)

    # History on join, marked as such.
    assert ("alice", "first, before bob came", True) in messages(bob), messages(bob)
    assert any("from history" in n for n in notices(bob)), notices(bob)

    # Both see both in the member list, online.
    wait(alice, lambda d: members(d).get("bob") == "online", "bob in alice's member list")
    wait(bob, lambda d: members(d).get("alice") == "online" and members(d).get("bob") == "online", "both in bob's list")
    wait(alice, lambda d: any(n == "bob joined" for n in notices(d)), "the join notice")

    # Messages both ways (live, not history).
    say(alice, "hello bob")
    wait(bob, has_message("alice", "hello bob"), "alice's message at bob")
    say(bob, "hi alice")
    wait(alice, has_message("bob", "hi alice"), "bob's message at alice")
    assert ("alice", "hello bob", False) in messages(bob)
    assert alice.find_element(By.CSS_SELECTOR, "#messages li.message.mine .body").text == "first, before bob came"

    # Typing: set while the box has text, cleared by sending.
    alice.find_element(By.ID, "text").send_keys("typing someth")
    wait(bob, lambda d: d.find_element(By.ID, "typing").text == "alice is typing…", "the typing indicator")
    assert members(bob)["alice"] == "typing"
    alice.find_element(By.ID, "text").send_keys(Keys.ENTER)
    wait(bob, lambda d: d.find_element(By.ID, "typing").text == "" and members(d)["alice"] == "online", "typing cleared")
    wait(bob, has_message("alice", "typing someth"), "the typed message")

    # Nothing twice.
    for driver in (alice, bob):
        shown = messages(driver)
        assert len({(a, b) for a, b, _ in shown}) == len(shown), shown

    # A second room, switching between them; unread badge on the one not shown.
    other = room_name("side")
    alice.find_element(By.ID, "new-room").send_keys(other + Keys.ENTER)
    wait(alice, lambda d: d.execute_script("return window.starlingChat.current") == other, "alice in the second room")
    wait(alice, lambda d: d.execute_script("return window.starlingChat.views.get(arguments[0]).room.joined", other), "the join")
    say(bob, "you there?")
    wait(alice, lambda d: d.find_elements(By.CSS_SELECTOR, f"#room-list button[data-room='{room}'] .badge"), "an unread badge")
    alice.find_element(By.CSS_SELECTOR, f"#room-list button[data-room='{room}']").click()
    wait(alice, has_message("bob", "you there?"), "the message in the first room")
    assert not alice.find_elements(By.CSS_SELECTOR, f"#room-list button[data-room='{room}'] .badge")

    # Bob leaves: alice sees him offline.
    bob.find_element(By.ID, "leave").click()
    wait(alice, lambda d: members(d).get("bob") == "offline", "bob offline")

    # Alice changes her name with the form (keyboard only): she is a new member, the old name goes offline.
    alice.find_element(By.ID, "sign-out").click()
    wait(alice, lambda d: d.find_element(By.ID, "join").is_displayed(), "the sign-in form")
    name_box = alice.find_element(By.ID, "name")
    name_box.clear()
    name_box.send_keys("alicia", Keys.TAB)
    assert alice.switch_to.active_element.get_attribute("id") == "room", "Tab leads from the name to the room"
    room_box = alice.find_element(By.ID, "room")
    room_box.clear()
    room_box.send_keys(room, Keys.ENTER)
    wait(alice, lambda d: d.execute_script("return window.starlingChat.me") == "alicia", "the new name")
    wait(alice, lambda d: d.execute_script("return window.starlingChat.views.get(arguments[0])?.room.joined === true", room), "the rejoin")
    wait(alice, lambda d: members(d).get("alicia") == "online" and members(d).get("alice") == "offline", "alicia online, alice offline")
    assert alice.find_element(By.ID, "status").text == "connected"


def test_reconnect_after_server_restart(own_server, browsers):
    server = own_server()
    alice, bob = browsers
    room = room_name("restart")
    open_chat(alice, server, "alice", room)
    open_chat(bob, server, "bob", room)
    say(alice, "before the restart")
    wait(bob, has_message("alice", "before the restart"), "the first message")
    joins = {d: d.execute_script("return window.starlingChat.views.get(arguments[0]).joins", room) for d in (alice, bob)}

    server.restart()

    for driver, name in ((alice, "alice"), (bob, "bob")):
        wait(driver, lambda d: d.execute_script("return document.body.dataset.connection") == "connected", f"{name} to reconnect", 20)
        wait(driver, lambda d, n=joins[driver]: d.execute_script(
            "const v = window.starlingChat.views.get(arguments[0]); return v.room.joined && v.joins > arguments[1]", room, n),
            f"{name} to rejoin", 20)
    # Resumed (the server kept the room) or told that it could not, and reloaded.
    for driver in (alice, bob):
        shown = notices(driver)
        assert any(n.startswith("Reconnected") or "could not resume" in n for n in shown), shown
        assert any("Connection lost" in n for n in shown), shown

    wait(alice, lambda d: members(d).get("bob") == "online", "bob back in alice's list")
    say(alice, "after the restart")
    wait(bob, has_message("alice", "after the restart"), "a message after the restart")
    say(bob, "still here")
    wait(alice, has_message("bob", "still here"), "bob's message after the restart")
    for driver in (alice, bob):
        bodies = [b for _, b, _ in messages(driver)]
        assert bodies.count("before the restart") == 1 or "could not resume" in " ".join(notices(driver)), bodies
        assert bodies.count("after the restart") == 1, bodies
    resumed = any(n.startswith("Reconnected") for n in notices(alice))
    print(f"server restart with the same data directory: {'resumed' if resumed else 'not recoverable, history reloaded'}")


def test_resume_after_connection_drop(server, browsers):
    """The WebSocket drops (not the server): the page resumes from its offset and gets what it missed, once."""
    alice, bob = browsers
    room = room_name("drop")
    open_chat(alice, server, "alice", room)
    open_chat(bob, server, "bob", room)
    say(bob, "one")
    wait(alice, has_message("bob", "one"), "the first message")
    # Drop alice's connection and keep her away for a moment (a slower first retry).
    alice.execute_script(
        "const c = window.starlingChat.client; c.options.reconnect.initialDelay = 1500; c.options.reconnect.jitter = 0;"
        " c._drop(c._ws, 4000, 'test: network blip')")
    wait(bob, lambda d: members(d).get("alice") == "offline", "alice gone at bob")
    say(bob, "two")
    say(bob, "three")
    wait(bob, has_message("bob", "three"), "bob's messages")
    wait(alice, lambda d: any(n.startswith("Reconnected: caught up on 2 messages") for n in notices(d)), "the resume", 15)
    shown = messages(alice)
    assert [m for m in shown if m[0] == "bob"] == [("bob", "one", False), ("bob", "two", True), ("bob", "three", True)], shown
    wait(bob, lambda d: members(d).get("alice") == "online", "alice back at bob")
    say(alice, "back")
    wait(bob, has_message("alice", "back"), "alice's message after the resume")


def test_reset_when_the_server_lost_its_state(own_server, browsers, tmp_path):
    """The server comes back on the same port without its data: x-recovered:false, a notice, history reloaded."""
    server = own_server()
    alice, bob = browsers
    room = room_name("reset")
    open_chat(alice, server, "alice", room)
    open_chat(bob, server, "bob", room)
    say(alice, "old news")
    wait(bob, has_message("alice", "old news"), "the first message")

    server.restart(tmp_path / "fresh-data")

    for driver in (alice, bob):
        wait(driver, lambda d: any("could not resume" in n for n in notices(d)), "the reset notice", 20)
        wait(driver, lambda d: any("reloaded" in n or "history reloaded" in n for n in notices(d)), "the reload", 20)
        wait(driver, lambda d: d.execute_script("return window.starlingChat.views.get(arguments[0]).room.joined", room), "the rejoin")
        stale = driver.execute_script("return [...document.querySelectorAll('#messages li.message.stale .body')].map(e => e.textContent)")
        assert stale == ["old news"], stale
    say(bob, "fresh start")
    wait(alice, has_message("bob", "fresh start"), "a message after the reset")
    wait(alice, lambda d: members(d).get("bob") == "online", "bob online after the reset")


def test_screenshot(server, browsers, tmp_path):
    alice, bob = browsers
    screenshot = REPO / os.environ[SCREENSHOT_ENV] if os.environ.get(SCREENSHOT_ENV) else tmp_path / "chat.png"
    room = "lobby"
    open_chat(alice, server, "alice", room, "dev")
    say(alice, "Morning! The new rooms have history, presence and resume.")
    say(alice, "Restart the server and the page picks up where it left off.")
    wait(alice, has_message("alice", "Restart the server and the page picks up where it left off."), "alice's messages")
    open_chat(bob, server, "bob", room, "dev")
    wait(bob, lambda d: d.execute_script("return window.starlingChat.views.get('dev')?.room.joined === true"), "bob in #dev")
    wait(alice, lambda d: members(d).get("bob") == "online", "bob online")
    alice.find_element(By.CSS_SELECTOR, "#room-list button[data-room='dev']").click()
    say(alice, "Standup in five minutes.")
    wait(bob, lambda d: d.find_elements(By.CSS_SELECTOR, "#room-list button[data-room='dev'] .badge"), "an unread badge")
    alice.find_element(By.CSS_SELECTOR, "#room-list button[data-room='lobby']").click()
    say(bob, "Nice, I got both of those as history when I joined.")
    wait(alice, has_message("bob", "Nice, I got both of those as history when I joined."), "bob's message")
    say(alice, "And you can see who is typing:")
    wait(bob, has_message("alice", "And you can see who is typing:"), "alice's message")
    alice.find_element(By.ID, "text").send_keys("like now")
    wait(bob, lambda d: d.find_element(By.ID, "typing").text == "alice is typing…", "typing")
    bob.find_element(By.ID, "text").send_keys("Looks great")
    bob.set_window_size(1100, 640)
    bob.execute_script("document.activeElement.blur()")
    screenshot.parent.mkdir(exist_ok=True)
    assert bob.save_screenshot(str(screenshot))
    assert screenshot.stat().st_size > 10_000
