// The chat page: one room at a time on /topic/chat.<room>, the author's name in the `x-user` header.
// URL parameters: ?name=alice&room=lobby joins at once; &send=text also sends a first message.
import { StarlingClient } from "./starling.js";

const $ = (id) => document.getElementById(id);
const ROOM = /^[A-Za-z0-9_-]{1,64}$/;
const params = new URLSearchParams(location.search);
const serverURL = `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}/ws`;

const client = new StarlingClient(serverURL, { reconnect: true });
let me = null;
let room = null;
let subscription = null;

client.on("state", (state) => {
  $("status").textContent = state;
  $("status").className = `status ${state}`;
  $("composer").querySelector("button[type=submit]").disabled = state !== "connected";
});
client.on("connect", (_frame, { reconnected }) => { if (reconnected && room) notice("reconnected"); });
client.on("close", ({ wasConnected, willReconnect }) => {
  if (room && wasConnected) notice(willReconnect ? "connection lost, reconnecting…" : "disconnected");
});
client.on("error", (error) => { if (room) notice(`error: ${error.message}`); });

function show(element, visible) { element.hidden = !visible; }

function item(className) {
  const list = $("messages");
  const nearBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 60;
  const li = document.createElement("li");
  if (className) li.className = className;
  list.append(li);
  while (list.children.length > 500) list.firstElementChild.remove();
  if (nearBottom) li.scrollIntoView({ block: "end" });
  return li;
}

function span(tag, className, text) {
  const el = document.createElement(tag);
  el.className = className;
  el.textContent = text;
  return el;
}

function notice(text) {
  item("system").textContent = text;
}

function onMessage(message) {
  const author = message.headers["x-user"] || "anonymous";
  const stamp = Number(message.headers.timestamp);
  const date = Number.isFinite(stamp) && stamp > 0 ? new Date(stamp) : new Date();
  const time = span("time", "", date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }));
  time.dateTime = date.toISOString();
  time.title = date.toLocaleString();
  const li = item(author === me ? "mine" : "");
  li.append(time, span("span", "author", author), span("span", "body", message.body));
}

async function join(name, roomName) {
  me = name;
  room = roomName;
  localStorage.setItem("starling.name", name);
  const url = new URL(location.href);
  url.searchParams.set("name", name);
  url.searchParams.set("room", roomName);
  url.searchParams.delete("send");
  history.replaceState(null, "", url);
  document.title = `#${roomName} · Starling chat`;
  $("room-title").textContent = `#${roomName}`;
  $("messages").replaceChildren();
  show($("join"), false);
  show($("chat"), true);
  subscription = client.subscribe(`/topic/chat.${roomName}`, onMessage);
  notice(`joined #${roomName} as ${name}`);
  $("text").focus();
  if (!client.connected) await client.connect();
}

function leave() {
  subscription?.unsubscribe();
  subscription = null;
  room = null;
  document.title = "Starling chat";
  $("room-title").textContent = "";
  show($("chat"), false);
  show($("join"), true);
}

async function send(text) {
  if (!text.trim() || !room) return;
  try {
    await client.send(`/topic/chat.${room}`, text, { "x-user": me, receipt: true });
  } catch (error) {
    notice(`not sent: ${error.message}`);
  }
}

$("join").addEventListener("submit", (event) => {
  event.preventDefault();
  const name = $("name").value.trim();
  const roomName = $("room").value.trim();
  const problem = !name ? "Pick a name." : !ROOM.test(roomName) ? "Room names use letters, digits, - and _." : "";
  $("join-error").textContent = problem;
  show($("join-error"), Boolean(problem));
  if (!problem) join(name, roomName).catch((error) => notice(`cannot connect: ${error.message}`));
});

$("composer").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = $("text");
  const text = input.value;
  input.value = "";
  send(text);
});

$("leave").addEventListener("click", leave);

// Start: prefill, and join at once when the URL names both.
$("name").value = params.get("name") || localStorage.getItem("starling.name") || "";
$("room").value = params.get("room") || "lobby";
if (params.get("name") && ROOM.test(params.get("room") || "")) {
  const first = params.get("send");
  join(params.get("name").trim().slice(0, 32), params.get("room"))
    .then(() => first && send(first))
    .catch((error) => notice(`cannot connect: ${error.message}`));
} else {
  client.connect().catch(() => {});
}
