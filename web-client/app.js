// The chat page: rooms on /room/<name> with history, presence (who is here, who is typing) and resume after a
// reconnect, built on starling.js. Your name is the CONNECT login, so it is the `user-name` others see.
// URL parameters: ?name=alice&room=lobby joins at once (room may list several: room=lobby,dev); &send=text
// also sends a first message. `window.starlingChat` exposes the client and rooms for debugging and tests.
import { StarlingClient, roomNameProblem } from "./starling.js";

const HISTORY = 50; // messages of history on joining a room
const MAX_ITEMS = 500; // kept per room
const TYPING_IDLE_MS = 4000; // "typing" is cleared after this long without a keystroke
const NAME = /^[^\s\u0000-\u001f\u007f][^\u0000-\u001f\u007f]{0,31}$/u;
const ROOM = /^[A-Za-z0-9_.-]{1,64}$/;

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const serverURL = `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}/ws`;

let client = null;
let me = null;
const views = new Map(); // room name -> view (see openRoom)
let current = null; // the view shown
let lostNoticeShown = false;

window.starlingChat = { get client() { return client; }, get me() { return me; }, views, get current() { return current?.name ?? null; } };

// ---- small DOM helpers

function el(tag, className, text) {
  const element = document.createElement(tag);
  if (className) element.className = className;
  if (text !== undefined) element.textContent = text;
  return element;
}

function show(element, visible) {
  element.hidden = !visible;
}

const formatTime = (ms) => new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });

// ---- signing in and out

async function signIn(name, roomNames) {
  me = name;
  localStorage.setItem("starling.name", name);
  const mine = new StarlingClient(serverURL, { reconnect: { initialDelay: 500, maxDelay: 10000 } });
  client = mine;
  // Events of a client signed out of (it may still be closing) are ignored.
  const on = (event, fn) => mine.on(event, (...args) => client === mine && fn(...args));
  on("state", onState);
  on("close", ({ wasConnected, willReconnect }) => {
    if (!wasConnected || lostNoticeShown) return;
    lostNoticeShown = true;
    for (const view of views.values()) {
      notice(view, willReconnect ? "Connection lost, reconnecting…" : "Disconnected.", "warning");
    }
    renderMembers();
  });
  on("connect", () => {
    lostNoticeShown = false;
  });
  on("error", (error) => {
    if (current && mine.state === "connected") notice(current, `Error: ${error.message}`, "error");
  });
  onState(client.state);
  $("me").textContent = `Signed in as ${name}`;
  show($("me"), true);
  show($("sign-out"), true);
  show($("join"), false);
  show($("chat"), true);
  for (const roomName of roomNames) openRoom(roomName);
  select(views.get(roomNames[0]));
  try {
    await mine.connect({ login: name });
  } catch (error) {
    if (client !== mine) return; // signed out meanwhile
    signOut();
    showJoinError(`Cannot connect: ${error.message}`);
  }
}

function signOut() {
  for (const view of views.values()) {
    clearTimeout(view.typingTimer);
    view.room.leave();
  }
  const url = new URL(location.href);
  url.searchParams.delete("name");
  url.searchParams.delete("send");
  history.replaceState(null, "", url);
  views.clear();
  current = null;
  lostNoticeShown = false;
  const old = client;
  client = null;
  old?.disconnect();
  me = null;
  show($("me"), false);
  show($("sign-out"), false);
  show($("chat"), false);
  show($("join"), true);
  $("room-title").textContent = "";
  document.title = "Starling chat";
  onState("idle");
  $("name").focus();
}

function showJoinError(text) {
  $("join-error").textContent = text;
  show($("join-error"), Boolean(text));
}

function onState(state) {
  const labels = { idle: "not signed in", connected: "connected", connecting: "connecting…", reconnecting: "reconnecting…", disconnecting: "disconnecting…", disconnected: "disconnected" };
  $("status").textContent = labels[state] || state;
  $("status").className = `status ${state}`;
  $("composer").querySelector("button[type=submit]").disabled = state !== "connected";
  document.body.dataset.connection = state;
  renderMembers();
}

// ---- rooms

function openRoom(name) {
  if (views.has(name)) return views.get(name);
  const view = {
    name,
    items: [], // { kind: "message" | "notice" | "divider", ... }
    unread: 0,
    draft: "",
    typingTimer: null,
    seen: new Set(), // users seen in the room (members or authors), for the offline part of the member list
    pendingHistory: 0, // history messages since the last SUBSCRIBE
    joins: 0,
    afterReset: false,
  };
  view.room = client.joinRoom(name, {
    history: HISTORY,
    meta: { status: document.visibilityState === "hidden" ? "away" : "online" },
    onMessage: (message) => onMessage(view, message),
    onPresence: (presence, change) => onPresence(view, presence, change),
    onJoin: (info) => onJoin(view, info),
    onReset: (info) => onReset(view, info),
  });
  views.set(name, view);
  renderRoomList();
  return view;
}

function leaveRoom(view) {
  setTyping(view, false);
  view.room.leave();
  views.delete(view.name);
  if (current === view) {
    current = null;
    const next = views.values().next().value;
    if (next) select(next);
    else renderEmpty();
  }
  renderRoomList();
}

function select(view) {
  if (!view) return;
  if (current && current !== view) {
    current.draft = $("text").value;
    setTyping(current, false); // not typing there any more
  }
  current = view;
  view.unread = 0;
  $("room-title").textContent = `#${view.name}`;
  document.title = `#${view.name} · Starling chat`;
  $("text").value = view.draft;
  $("text").disabled = false;
  $("leave").disabled = false;
  const url = new URL(location.href);
  url.searchParams.set("name", me);
  url.searchParams.set("room", view.name);
  url.searchParams.delete("send");
  history.replaceState(null, "", url);
  renderRoomList();
  renderMessages();
  renderMembers();
  renderTyping();
}

function renderEmpty() {
  $("room-title").textContent = "";
  $("messages").replaceChildren(el("li", "notice", "You are in no room: join one on the left."));
  $("member-list").replaceChildren();
  $("member-count").textContent = "";
  $("typing").textContent = "";
  $("text").value = "";
  $("text").disabled = true;
  $("leave").disabled = true;
}

function renderRoomList() {
  const list = $("room-list");
  const focused = list.contains(document.activeElement) ? document.activeElement.dataset.room : null;
  list.replaceChildren();
  for (const view of views.values()) {
    const li = el("li");
    const button = el("button", "room-button");
    button.type = "button";
    button.dataset.room = view.name;
    button.append(el("span", "room-name", `#${view.name}`));
    if (view === current) button.setAttribute("aria-current", "true");
    if (view.unread > 0) {
      const badge = el("span", "badge", String(view.unread));
      badge.setAttribute("aria-label", `${view.unread} unread`);
      button.append(badge);
    }
    button.addEventListener("click", () => {
      select(view);
      $("text").focus();
    });
    li.append(button);
    list.append(li);
    if (view.name === focused) button.focus(); // keep a keyboard user's place
  }
}

// ---- messages

function push(view, item) {
  view.items.push(item);
  if (view.items.length > MAX_ITEMS) view.items.splice(0, view.items.length - MAX_ITEMS);
  if (view === current) {
    appendItem(item);
  } else if (item.kind === "message" && !item.history) {
    view.unread += 1;
    renderRoomList();
  }
}

function notice(view, text, tone = "info") {
  push(view, { kind: "notice", text, tone });
}

function renderItem(item) {
  if (item.kind === "notice") return el("li", `notice ${item.tone}`, item.text);
  if (item.kind === "divider") {
    const li = el("li", "divider");
    li.append(el("span", "", item.text));
    return li;
  }
  const li = el("li", "message");
  if (item.user === me) li.classList.add("mine");
  if (item.history) li.classList.add("history");
  if (item.stale) li.classList.add("stale");
  const time = el("time", "time", item.time ? formatTime(item.time) : "");
  if (item.time) {
    time.dateTime = new Date(item.time).toISOString();
    time.title = new Date(item.time).toLocaleString();
  }
  const author = el("span", "author", item.user);
  const body = el("span", "body", item.body);
  li.append(time, author, body);
  if (item.history) li.append(el("span", "visually-hidden", " (from history)"));
  return li;
}

function appendItem(item) {
  const list = $("messages");
  const nearBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 80;
  list.append(renderItem(item));
  while (list.children.length > MAX_ITEMS) list.firstElementChild.remove();
  if (nearBottom || item.user === me) list.scrollTop = list.scrollHeight;
}

function renderMessages() {
  const list = $("messages");
  list.replaceChildren(...(current ? current.items.map(renderItem) : []));
  list.scrollTop = list.scrollHeight;
}

function onMessage(view, message) {
  const user = message.user || "anonymous";
  const stamp = Number(message.headers.timestamp);
  const time = Number.isFinite(stamp) && stamp > 0 ? stamp : message.isHistory ? null : Date.now();
  if (message.isHistory) view.pendingHistory += 1;
  view.seen.add(user);
  push(view, { kind: "message", user, body: message.body, time, history: message.isHistory, offset: message.offset });
  if (view === current && !view.room.presence?.has(user)) renderMembers();
}

function onJoin(view, info) {
  view.joins += 1;
  const n = view.pendingHistory;
  view.pendingHistory = 0;
  if (view.afterReset) {
    view.afterReset = false;
    push(view, { kind: "divider", text: n ? `${n} recent message${n === 1 ? "" : "s"} reloaded above` : "history reloaded: the room is empty" });
  } else if (info.resumed && info.recovered) {
    notice(view, n ? `Reconnected: caught up on ${n} message${n === 1 ? "" : "s"} you missed.` : "Reconnected: nothing missed.", "ok");
  } else {
    if (n) push(view, { kind: "divider", text: `${n} earlier message${n === 1 ? "" : "s"} from history` });
    notice(view, `You joined #${view.name} as ${me}.`);
  }
}

function onReset(view) {
  for (const item of view.items) if (item.kind === "message") item.stale = true;
  view.pendingHistory = 0;
  view.afterReset = true;
  notice(view, "The server could not resume this room (it restarted, or no longer keeps what you missed): " +
    "messages above may be incomplete. Reloading the latest history…", "warning");
  if (view === current) renderMessages();
}

// ---- presence

function onPresence(view, presence, change) {
  for (const user of presence.members.keys()) view.seen.add(user);
  if (change.type === "diff") {
    for (const user of change.joins) if (user !== me) notice(view, `${user} joined`, "presence");
    for (const user of change.leaves) if (user !== me) notice(view, `${user} left`, "presence");
  }
  if (view === current) {
    renderMembers();
    renderTyping();
  }
}

const isTyping = (member) => member?.meta?.typing === "true";

function renderMembers() {
  const list = $("member-list");
  if (!current) return;
  const presence = current.room.presence;
  const live = client?.connected && presence?.ready;
  $("members").classList.toggle("stale", !live);
  const rows = [];
  for (const { user, connections, meta } of presence ? presence.list() : []) {
    const status = meta.status === "away" ? "away" : "online";
    rows.push({ user, status, connections, typing: isTyping({ meta }) });
  }
  const present = new Set(rows.map((r) => r.user));
  for (const user of [...current.seen].sort()) if (!present.has(user)) rows.push({ user, status: "offline" });
  rows.sort((a, b) => (a.status === "offline") - (b.status === "offline") || (a.user === me ? -1 : b.user === me ? 1 : a.user.localeCompare(b.user)));
  list.replaceChildren(...rows.map((row) => {
    const li = el("li", `member ${row.status}`);
    li.dataset.user = row.user;
    li.dataset.status = row.status;
    const dot = el("span", "dot");
    dot.setAttribute("aria-hidden", "true");
    const name = el("span", "member-name", row.user);
    const detail = el("span", "member-status", row.typing && row.user !== me ? "typing…" : row.status);
    if (row.typing && row.user !== me) li.classList.add("is-typing");
    if (row.connections > 1) li.title = `${row.connections} connections`;
    li.append(dot, name);
    if (row.user === me) li.append(el("span", "you", " (you)"));
    li.append(detail);
    return li;
  }));
  const count = presence?.ready ? presence.count : 0;
  $("member-count").textContent = `${count} online`;
}

function renderTyping() {
  const presence = current?.room.presence;
  const typing = presence ? presence.list().filter((m) => m.user !== me && isTyping(m)).map((m) => m.user) : [];
  $("typing").textContent = typing.length === 0 ? "" : typing.length === 1 ? `${typing[0]} is typing…`
    : typing.length <= 3 ? `${typing.slice(0, -1).join(", ")} and ${typing.at(-1)} are typing…` : "Several people are typing…";
}

// ---- composing

function setTyping(view, on) {
  if (!view) return;
  clearTimeout(view.typingTimer);
  view.typingTimer = null;
  if (on) view.typingTimer = setTimeout(() => setTyping(view, false), TYPING_IDLE_MS);
  try {
    view.room.setMeta({ typing: on ? true : null });
  } catch {
    // not connected: the next join carries the metadata
  }
}

async function send(view, text) {
  setTyping(view, false);
  try {
    await view.room.send(text, { receipt: true });
  } catch (error) {
    notice(view, `Not sent: ${error.message}`, "error");
    if (view === current && !$("text").value) $("text").value = text;
  }
}

// ---- wiring

$("join").addEventListener("submit", (event) => {
  event.preventDefault();
  const name = $("name").value.trim();
  const roomName = $("room").value.trim();
  const problem = !NAME.test(name) ? "Pick a name (up to 32 characters)." : !ROOM.test(roomName) || roomNameProblem(roomName)
    ? "Room names use letters, digits, ., - and _." : "";
  showJoinError(problem);
  if (!problem) signIn(name, [roomName]);
});

$("add-room").addEventListener("submit", (event) => {
  event.preventDefault();
  const name = $("new-room").value.trim();
  if (!ROOM.test(name)) {
    $("new-room").setCustomValidity("Letters, digits, ., - and _.");
    $("new-room").reportValidity();
    return;
  }
  $("new-room").setCustomValidity("");
  $("new-room").value = "";
  select(openRoom(name));
  $("text").focus();
});
$("new-room").addEventListener("input", () => $("new-room").setCustomValidity(""));

$("composer").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = $("text");
  const text = input.value;
  if (!current || !text.trim()) return;
  input.value = "";
  current.draft = "";
  send(current, text);
});

$("text").addEventListener("input", () => {
  if (!current) return;
  setTyping(current, $("text").value.trim() !== "");
});

$("text").addEventListener("keydown", (event) => {
  if (event.key === "Escape" && current) {
    $("text").value = "";
    setTyping(current, false);
  }
});

$("leave").addEventListener("click", () => current && leaveRoom(current));
$("sign-out").addEventListener("click", signOut);

// Alt+ArrowUp / Alt+ArrowDown switch rooms.
document.addEventListener("keydown", (event) => {
  if (!event.altKey || (event.key !== "ArrowUp" && event.key !== "ArrowDown") || !current) return;
  const names = [...views.keys()];
  const next = names[(names.indexOf(current.name) + (event.key === "ArrowUp" ? -1 : 1) + names.length) % names.length];
  event.preventDefault();
  select(views.get(next));
});

document.addEventListener("visibilitychange", () => {
  const status = document.visibilityState === "hidden" ? "away" : "online";
  for (const view of views.values()) {
    try {
      view.room.setMeta({ status });
    } catch {
      // applied on the next join
    }
  }
});

// Start: prefill, and join at once when the URL names both.
$("name").value = params.get("name") || localStorage.getItem("starling.name") || "";
const requestedRooms = (params.get("room") || "").split(",").map((r) => r.trim()).filter((r) => ROOM.test(r));
$("room").value = requestedRooms[0] || "lobby";
const requestedName = (params.get("name") || "").trim().slice(0, 32);
if (NAME.test(requestedName) && requestedRooms.length) {
  const first = params.get("send");
  signIn(requestedName, requestedRooms).then(() => {
    if (first && current) send(current, first);
  });
} else {
  ($("name").value ? $("room") : $("name")).focus();
}
