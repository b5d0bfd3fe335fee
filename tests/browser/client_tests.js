// Unit tests of web-client/starling.js: the codec, heart-beat negotiation and tolerance, the Presence helper
// and rooms (history, resume, no duplicates, reset on x-recovered:false, metadata) against a scripted fake
// WebSocket server. No real server needed. Run in a browser by client_tests.html (the pytest serves both
// next to starling.js), or in node:  node tests/browser/run_node.mjs
import {
  encodeFrame, escapeHeader, unescapeHeader, FrameParser, Frame, StompError, parseHeartbeat, negotiateHeartbeat,
  StarlingClient, State, Presence, Room, roomNameProblem, presenceHeaders,
} from "./starling.js";

// ---- a tiny harness

const tests = [];
const test = (name, fn) => tests.push({ name, fn });

class AssertionError extends Error {}
function assert(condition, message = "assertion failed") {
  if (!condition) throw new AssertionError(message);
}
function eq(actual, expected, message = "") {
  const a = JSON.stringify(actual), e = JSON.stringify(expected);
  if (a !== e) throw new AssertionError(`${message ? message + ": " : ""}expected ${e}, got ${a}`);
}
function throws(fn, pattern, message = "") {
  try {
    fn();
  } catch (error) {
    if (pattern && !pattern.test(String(error.message))) throw new AssertionError(`${message} wrong error: ${error.message}`);
    return error;
  }
  throw new AssertionError(`${message} expected an exception`);
}
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
async function until(predicate, what, timeout = 2000) {
  const end = Date.now() + timeout;
  while (!predicate()) {
    if (Date.now() > end) throw new AssertionError(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

export async function run(onResult = () => {}) {
  const results = [];
  for (const { name, fn } of tests) {
    const started = Date.now();
    let result;
    try {
      await fn();
      result = { name, ok: true, ms: Date.now() - started };
    } catch (error) {
      result = { name, ok: false, ms: Date.now() - started, error: String(error?.stack || error) };
    }
    results.push(result);
    onResult(result);
  }
  const failed = results.filter((r) => !r.ok).length;
  return { total: results.length, passed: results.length - failed, failed, results };
}

// ---- a scripted fake WebSocket server

const parse = (data) => {
  const frames = [];
  new FrameParser({ onFrame: (f) => frames.push(f) }).push(data);
  return frames;
};

class FakeServer {
  constructor() {
    this.sockets = [];
    this.heartBeat = "0,0";
    this.onFrame = null; // (socket, frame) => handled?
    const server = this;
    this.WebSocket = class FakeWebSocket {
      constructor(url, protocols) {
        this.url = url;
        this.protocols = protocols;
        this.protocol = "v12.stomp";
        this.readyState = 0;
        this.sent = []; // raw data sent by the client
        this.frames = []; // frames sent by the client
        this.heartbeats = 0;
        this._parser = new FrameParser({
          onFrame: (frame) => {
            this.frames.push(frame);
            server._handle(this, frame);
          },
          onHeartbeat: () => (this.heartbeats += 1),
        });
        server.sockets.push(this);
        setTimeout(() => {
          if (this.readyState !== 0) return;
          this.readyState = 1;
          this.onopen?.({});
        }, 0);
      }
      send(data) {
        if (this.readyState !== 1) throw new Error("fake socket not open");
        this.sent.push(data);
        this._parser.push(data);
      }
      close(code = 1000, reason = "") {
        if (this.readyState >= 2) return;
        this.readyState = 3;
        setTimeout(() => this.onclose?.({ code, reason, wasClean: true }), 0);
      }
      // server side
      deliver(command, headers = {}, body = "") {
        this.onmessage?.({ data: encodeFrame({ command, headers, body }) });
      }
      raw(data) {
        this.onmessage?.({ data });
      }
      drop() {
        if (this.readyState >= 2) return;
        this.readyState = 3;
        this.onclose?.({ code: 1006, reason: "", wasClean: false });
      }
      sentFrames(command, destination) {
        return this.frames.filter((f) => f.command === command && (destination === undefined || f.headers.destination === destination));
      }
    };
  }
  get last() {
    return this.sockets[this.sockets.length - 1];
  }
  _handle(socket, frame) {
    if (this.onFrame?.(socket, frame)) return;
    if (frame.command === "CONNECT") {
      socket.deliver("CONNECTED", { version: "1.2", "heart-beat": this.heartBeat, server: "fake" });
    } else if (frame.command === "DISCONNECT" && frame.headers.receipt) {
      socket.deliver("RECEIPT", { "receipt-id": frame.headers.receipt });
    }
  }
}

function makeClient(server, options = {}) {
  return new StarlingClient("ws://fake.invalid/ws", {
    WebSocket: server.WebSocket,
    heartbeat: [0, 0],
    reconnect: { initialDelay: 5, maxDelay: 20, jitter: 0 },
    ...options,
  });
}

// ---- codec

test("escapeHeader / unescapeHeader round-trip", () => {
  eq(escapeHeader("a:b\nc\\d\re"), "a\\cb\\nc\\\\d\\re");
  eq(unescapeHeader("a\\cb\\nc\\\\d\\re"), "a:b\nc\\d\re");
  throws(() => unescapeHeader("bad\\t"), /undefined escape/);
});

test("encodeFrame: text body, content-length in UTF-8 bytes, skipped headers", () => {
  const out = encodeFrame({ command: "SEND", headers: { destination: "/room/x", a: undefined, b: null, "content-length": 99 }, body: "héllo" });
  eq(out, "SEND\ndestination:/room/x\ncontent-length:6\n\nhéllo\0");
});

test("encodeFrame: CONNECT is not escaped, others are", () => {
  eq(encodeFrame({ command: "CONNECT", headers: { login: "a:b" } }), "CONNECT\nlogin:a:b\n\n\0");
  eq(encodeFrame({ command: "SEND", headers: { k: "a:b" } }), "SEND\nk:a\\cb\n\n\0");
  throws(() => encodeFrame({ command: "CONNECT", headers: { login: "a\nb" } }), /unescaped/);
});

test("encodeFrame: binary body", () => {
  const out = encodeFrame({ command: "SEND", headers: {}, body: new Uint8Array([1, 0, 2]) });
  assert(out instanceof Uint8Array, "binary frame is bytes");
  eq([...out.slice(-4)], [1, 0, 2, 0]);
});

test("FrameParser: frames split anywhere, several per push, heart-beats", () => {
  const frames = [];
  let beats = 0;
  const p = new FrameParser({ onFrame: (f) => frames.push(f), onHeartbeat: () => beats++ });
  const data = "\nMESSAGE\nx:1\n\nab\0\r\nMESSAGE\ncontent-length:3\ny:a\\cb\n\na\0b\0\n";
  for (const ch of data) p.push(ch);
  eq(frames.length, 2);
  eq(frames[0].body, "ab");
  eq(frames[1].headers.y, "a:b");
  eq([...frames[1].binaryBody], [97, 0, 98]);
  eq(beats, 3);
  const again = [];
  const q = new FrameParser({ onFrame: (f) => again.push(f) });
  q.push(data);
  eq(again.map((f) => f.body.length), [2, 3]);
  eq(p.pending, 0);
});

test("FrameParser: the first of repeated headers wins; errors reset", () => {
  const [f] = parse("MESSAGE\na:1\na:2\n\n\0");
  eq(f.headers.a, "1");
  const p = new FrameParser();
  throws(() => p.push("MESSAGE\nnocolon\n\n\0"), /without ':'/);
  throws(() => p.push("MESSAGE\ncontent-length:1\n\nab\0"), /longer than/);
  eq(p.pending, 0);
});

test("Frame.json and utf-8 body", () => {
  const [f] = parse(encodeFrame({ command: "MESSAGE", headers: {}, body: '{"ü":1}' }));
  assert(f instanceof Frame);
  eq(f.json(), { "ü": 1 });
});

// ---- heart-beats

test("heart-beat negotiation and the generous default send interval", () => {
  eq(parseHeartbeat("10000, 5000"), [10000, 5000]);
  eq(parseHeartbeat("garbage"), [0, 0]);
  eq(negotiateHeartbeat([30000, 10000], [10000, 10000]), { outgoing: 30000, incoming: 10000 });
  eq(negotiateHeartbeat([0, 10000], [10000, 10000]), { outgoing: 0, incoming: 10000 });
  const client = new StarlingClient("ws://x/ws");
  eq(client.options.heartbeat, [30000, 10000], "default offer");
});

test("heart-beats: a late (throttled) tick never drops the server; real silence does", async () => {
  const server = new FakeServer();
  server.heartBeat = "1000,1000";
  const client = makeClient(server, { heartbeat: [1000, 1000], heartbeatMargin: 500, reconnect: false });
  const errors = [];
  client.on("error", (e) => errors.push(e.message));
  await client.connect();
  clearInterval(client._hbTimer); // drive the ticks by hand, with made-up times
  const tick = client._hbTick;
  eq(tick, 250);
  const t0 = client._lastReceived;
  client._lastTick = t0;
  // The tab slept for a minute: the timer finally runs, frames may be queued behind it.
  client._heartbeatTick(tick, t0 + 60000);
  eq(client.state, State.CONNECTED, "after a late tick");
  // The queued heart-beat arrives: all is well.
  server.last.raw("\n");
  client._lastReceived = t0 + 60010;
  client._heartbeatTick(tick, t0 + 60000 + tick);
  eq(client.state, State.CONNECTED, "after the server was heard");
  // Throttled to once a minute while the server keeps talking (network events are not throttled).
  for (let i = 2; i <= 5; i++) {
    client._lastReceived = t0 + i * 60000 - 500;
    client._heartbeatTick(tick, t0 + i * 60000);
  }
  eq(client.state, State.CONNECTED, "throttled ticks with a live server");
  // Punctual ticks and a silent server: dropped after 2 x 1000 + 500 ms.
  let t = t0 + 5 * 60000;
  client._heartbeatTick(tick, t + tick);
  for (let n = 2; client.state === State.CONNECTED && n < 40; n++) client._heartbeatTick(tick, t + n * tick);
  assert(client.state !== State.CONNECTED, "a silent server is dropped");
  assert(errors.some((m) => /server silent/.test(m)), "reports the silence");
  const silentFor = client._lastTick - (t0 + 5 * 60000 - 500);
  assert(silentFor > 2500 && silentFor <= 2500 + tick, `dropped after ${silentFor} ms of silence`);
});

test("heart-beats: answered when the server's arrive, even without a timer", async () => {
  const server = new FakeServer();
  server.heartBeat = "10000,10000";
  const client = makeClient(server, { heartbeat: [30000, 10000], reconnect: false });
  await client.connect();
  eq(client.heartbeat, { outgoing: 30000, incoming: 10000 });
  clearInterval(client._hbTimer);
  const ws = server.last;
  const before = ws.heartbeats;
  client._lastSent -= 20000; // 20 s since we last sent: more than half the interval
  ws.raw("\n");
  eq(ws.heartbeats, before + 1, "answered the server's heart-beat");
  ws.raw("\n");
  eq(ws.heartbeats, before + 1, "not more often than needed");
  await client.disconnect();
});

// ---- presence

test("Presence: state, joins, leaves, updates, count", () => {
  const changes = [];
  const p = new Presence({ onChange: (presence, change) => changes.push(change) });
  p.apply({ type: "state", data: { count: 2, members: { bob: { connections: 1, meta: {} }, alice: { connections: 2, meta: { status: "online" } } } } });
  eq(p.count, 2);
  eq(p.list().map((m) => m.user), ["alice", "bob"]);
  eq(p.get("alice"), { connections: 2, meta: { status: "online" } });
  eq(changes[0], { type: "state", joins: ["bob", "alice"], leaves: [], updates: [], count: 2 });
  p.apply({ type: "diff", data: { count: 3, joins: { carol: { connections: 1, meta: { status: "away" } } }, leaves: {}, updates: {} } });
  eq(p.count, 3);
  assert(p.has("carol"));
  p.apply({ type: "diff", data: { count: 3, joins: {}, leaves: {}, updates: { alice: { meta: { status: "online", typing: "true" } } } } });
  eq(p.get("alice"), { connections: 2, meta: { status: "online", typing: "true" } }, "an update keeps the connection count");
  p.apply({ type: "diff", data: { count: 2, joins: {}, leaves: { bob: { connections: 0, meta: {} } }, updates: {} } });
  eq(p.list().map((m) => m.user), ["alice", "carol"]);
  eq(changes.at(-1), { type: "diff", joins: [], leaves: ["bob"], updates: [], count: 2 });
  // A new state (after a reconnect) reports what changed.
  const c = p.apply({ type: "state", data: { count: 2, members: { alice: { connections: 1, meta: { status: "online" } }, dave: { connections: 1, meta: {} } } } });
  eq([c.joins, c.leaves, c.updates], [["dave"], ["carol"], ["alice"]]);
  eq(changes.length, 5);
});

test("Presence: from STOMP frames, count mode, x-presence-count fallback", () => {
  const p = new Presence();
  const [state] = parse(encodeFrame({ command: "MESSAGE", headers: { "x-presence": "state", "x-presence-count": "1" }, body: '{"count":1,"members":{"a":{"connections":1,"meta":{"k":"v"}}}}' }));
  p.apply(state);
  eq(p.list(), [{ user: "a", connections: 1, meta: { k: "v" } }]);
  const [diff] = parse(encodeFrame({ command: "MESSAGE", headers: { "x-presence": "diff", "x-presence-count": "2" }, body: '{"joins":{"b":{"connections":1,"meta":{}}}}' }));
  p.apply(diff);
  eq(p.count, 2, "count from the header");
  const q = new Presence();
  q.apply({ type: "state", data: { count: 5000 } });
  eq([q.mode, q.count, q.members.size], ["count", 5000, 0]);
  q.apply({ type: "count", data: { count: 5001 } });
  eq(q.count, 5001);
  throws(() => q.apply({ type: "weird", data: {} }), /unknown presence/);
});

// ---- rooms

test("room names and presence headers", () => {
  eq(roomNameProblem("lobby"), "");
  eq(roomNameProblem("team.dev"), "");
  assert(roomNameProblem(""));
  assert(roomNameProblem("a/b"));
  assert(roomNameProblem("a*"));
  assert(roomNameProblem("a#"));
  assert(roomNameProblem("a\nb"));
  assert(roomNameProblem("x".repeat(201)));
  eq(roomNameProblem("é".repeat(100)), "");
  assert(roomNameProblem("é".repeat(101)), "200 bytes, not characters");
  eq(presenceHeaders({ typing: true, away: null, n: 3, off: false }), { "x-presence-typing": "true", "x-presence-away": "", "x-presence-n": "3", "x-presence-off": "" });
  const client = new StarlingClient("ws://x/ws");
  throws(() => client.joinRoom("a/b"), /invalid room name/);
});

// A fake room server: history for x-history, resume for x-resume-from, per `room` state.
function roomServer() {
  const server = new FakeServer();
  const room = { epoch: "E1", log: [], keepFrom: 1, members: new Set() }; // log[i] = body of offset i+1
  server.room = room;
  server.recover = true; // answer x-resume-from with x-recovered
  server.onFrame = (socket, frame) => {
    const h = frame.headers;
    if (frame.command === "SUBSCRIBE" && h.destination.startsWith("/room/")) {
      socket.roomSub = h.id;
      const message = (offset, history, extra = {}) => socket.deliver("MESSAGE", {
        subscription: h.id, "message-id": `m${offset}`, destination: h.destination, "x-epoch": room.epoch,
        "x-offset": String(offset), "user-name": "someone", ...(history ? { "x-history": "true" } : {}), ...extra,
      }, room.log[offset - 1]);
      const last = room.log.length;
      const receipt = { "receipt-id": h.receipt, "x-epoch": room.epoch, "x-offset": String(last) };
      if (h["x-resume-from"]) {
        const [epoch, offset] = h["x-resume-from"].split(":");
        const ok = server.recover && epoch === room.epoch && Number(offset) + 1 >= room.keepFrom;
        receipt["x-recovered"] = String(ok);
        if (ok) {
          for (let o = Number(offset) + 1; o <= last; o++) message(o, true);
        } else if (server.liveAfterUnrecovered) {
          room.log.push("live after reset");
          message(room.log.length, false, { "x-recovered": "false" });
          receipt["x-offset"] = String(room.log.length);
        }
      } else if (h["x-history"]) {
        for (let o = Math.max(room.keepFrom, last - Number(h["x-history"]) + 1); o <= last; o++) message(o, true);
      }
      if (h.receipt) socket.deliver("RECEIPT", receipt);
      return true;
    }
    if (frame.command === "SEND" && h.destination.startsWith("/room/")) {
      room.log.push(frame.body);
      for (const s of server.sockets) {
        if (s.readyState === 1 && s.roomSub) {
          s.deliver("MESSAGE", { subscription: s.roomSub, "message-id": "x", destination: h.destination, "x-epoch": room.epoch, "x-offset": String(room.log.length), "user-name": "someone" }, frame.body);
        }
      }
      if (h.receipt) socket.deliver("RECEIPT", { "receipt-id": h.receipt });
      return true;
    }
    if (frame.command === "SEND" && h.receipt) {
      socket.deliver("RECEIPT", { "receipt-id": h.receipt });
      return true;
    }
    return false;
  };
  return server;
}

test("room: first join asks for history with metadata; history marked; position kept", async () => {
  const server = roomServer();
  server.room.log.push("one", "two", "three");
  const client = makeClient(server);
  const got = [];
  const room = client.joinRoom("lobby", { history: 2, meta: { status: "online", gone: null }, onMessage: (m) => got.push([m.offset, m.body, m.isHistory, m.user]) });
  assert(room instanceof Room);
  await client.connect({ login: "alice" });
  const info = await room.ready;
  const ws = server.last;
  eq(ws.frames[0].headers.login, "alice");
  const [roomSub] = ws.sentFrames("SUBSCRIBE", "/room/lobby");
  eq([roomSub.headers["x-history"], roomSub.headers["x-presence-status"], roomSub.headers["x-resume-from"], roomSub.headers["x-presence-gone"]], ["2", "online", undefined, undefined]);
  assert(roomSub.headers.receipt, "asks for a RECEIPT");
  eq(ws.sentFrames("SUBSCRIBE", "/presence/lobby").length, 1, "follows presence");
  eq(got, [[2, "two", true, "someone"], [3, "three", true, "someone"]]);
  eq([info.epoch, info.offset, info.resumed, info.recovered], ["E1", 3, false, null]);
  await room.send("four", { receipt: true });
  eq(got.at(-1), [4, "four", false, "someone"]);
  eq(room.position, { epoch: "E1", offset: 4 });
  assert(room.joined);
  await client.disconnect();
});

test("room: resumes after a reconnect from the last offset, without duplicates", async () => {
  const server = roomServer();
  server.room.log.push("one");
  const client = makeClient(server);
  const got = [];
  const joins = [];
  const room = client.joinRoom("lobby", { onMessage: (m) => got.push(m.offset), onJoin: (i) => joins.push([i.resumed, i.recovered]) });
  await client.connect({ login: "alice" });
  await room.ready;
  eq(got, [1]);
  const first = server.last;
  first.drop();
  server.room.log.push("two", "three"); // sent while we were away
  await until(() => server.sockets.length === 2 && joins.length === 2, "the rejoin");
  const sub = server.last.sentFrames("SUBSCRIBE", "/room/lobby")[0];
  eq(sub.headers["x-resume-from"], "E1:1");
  eq(sub.headers["x-history"], undefined, "resume replaces history");
  eq(got, [1, 2, 3]);
  eq(joins, [[false, null], [true, true]]);
  // A duplicate (e.g. a live message racing the resume) is dropped.
  server.last.deliver("MESSAGE", { subscription: sub.headers.id, "x-epoch": "E1", "x-offset": "3", "message-id": "d" }, "three");
  server.last.deliver("MESSAGE", { subscription: sub.headers.id, "x-epoch": "E1", "x-offset": "4", "message-id": "e" }, "four");
  eq(got, [1, 2, 3, 4]);
  eq(room.duplicates, 1);
  // Even with nothing delivered yet, the join's offset is the resume point.
  await client.disconnect();
});

test("room: resume point from the join RECEIPT when no message was delivered", async () => {
  const server = roomServer();
  server.room.log.push("a", "b", "c");
  const client = makeClient(server);
  const room = client.joinRoom("quiet", { history: 0 });
  await client.connect();
  await room.ready;
  eq(room.position, { epoch: "E1", offset: 3 });
  server.last.drop();
  await until(() => server.sockets.length === 2 && server.last.sentFrames("SUBSCRIBE", "/room/quiet").length === 1, "the rejoin");
  eq(server.last.sentFrames("SUBSCRIBE", "/room/quiet")[0].headers["x-resume-from"], "E1:3");
  await client.disconnect();
});

test("room: x-recovered:false -> reset event, history reloaded, nothing stale delivered", async () => {
  for (const liveFirst of [false, true]) {
    const server = roomServer();
    server.room.log.push("a", "b");
    const client = makeClient(server);
    const got = [];
    const resets = [];
    const room = client.joinRoom("lobby", { history: 10, onMessage: (m) => got.push(`${m.epoch}:${m.offset}:${m.body}`), onReset: (i) => resets.push(i) });
    await client.connect();
    await room.ready;
    eq(got, ["E1:1:a", "E1:2:b"]);
    // The server restarts without a store: a new epoch.
    server.last.drop();
    server.room.epoch = "E2";
    server.room.log = ["x"];
    server.liveAfterUnrecovered = liveFirst;
    await until(() => resets.length === 1 && room.joined && room.epoch === "E2", "the reset and rejoin");
    const frames = server.last.frames.filter((f) => f.headers.destination === "/room/lobby" || f.command === "UNSUBSCRIBE");
    eq(frames.map((f) => f.command), ["SUBSCRIBE", "SUBSCRIBE", "UNSUBSCRIBE"], `rejoin, then leave the old subscription (live first: ${liveFirst}) ${JSON.stringify(frames.map((f) => f.headers))}`);
    eq(frames[0].headers["x-resume-from"], "E1:2");
    eq(frames[1].headers["x-history"], "10");
    eq(frames[2].headers.id, frames[0].headers.id);
    eq(resets[0].previous, { epoch: "E1", offset: 2 });
    eq(resets[0].epoch, "E2");
    const expected = liveFirst ? ["E2:1:x", "E2:2:live after reset"] : ["E2:1:x"];
    eq(got.slice(2), expected, `reloaded history (live first: ${liveFirst})`);
    await client.disconnect();
  }
});

test("room: position option resumes at once; reload:false delivers the new epoch without rejoining", async () => {
  const server = roomServer();
  server.room.log.push("a", "b", "c");
  server.recover = false;
  server.liveAfterUnrecovered = true;
  const client = makeClient(server);
  const got = [];
  const resets = [];
  const room = client.joinRoom("lobby", { position: { epoch: "E0", offset: 7 }, reload: false, presence: false, onMessage: (m) => got.push(`${m.epoch}:${m.offset}`), onReset: (i) => resets.push(i) });
  await client.connect();
  const info = await room.ready;
  const subs = server.last.sentFrames("SUBSCRIBE");
  eq(subs.map((f) => [f.headers.destination, f.headers["x-resume-from"]]), [["/room/lobby", "E0:7"]], "no presence, resume at once");
  eq(resets.length, 1);
  eq(resets[0].previous, { epoch: "E0", offset: 7 });
  eq(got, ["E1:4"], "the message that said x-recovered:false is delivered");
  eq([info.resumed, info.recovered, room.position], [true, false, { epoch: "E1", offset: 4 }]);
  eq(room.presence, null);
  await client.disconnect();
});

test("room: setMeta sends x-presence headers, re-sent on rejoin; leave unsubscribes", async () => {
  const server = roomServer();
  const client = makeClient(server);
  const room = client.joinRoom("lobby", { meta: { status: "online" } });
  room.setMeta({ typing: true }); // before connecting: applied with the join
  await client.connect();
  await room.ready;
  let sub = server.last.sentFrames("SUBSCRIBE", "/room/lobby")[0];
  eq([sub.headers["x-presence-status"], sub.headers["x-presence-typing"]], ["online", "true"]);
  eq(server.last.sentFrames("SEND", "/presence/lobby").length, 0, "nothing sent before the join");
  await room.setMeta({ typing: null }, { receipt: true });
  room.setMeta({ typing: null }); // no change: nothing sent
  room.setMeta({ status: "away" });
  const sends = server.last.sentFrames("SEND", "/presence/lobby");
  eq(sends.map((f) => [f.headers["x-presence-typing"], f.headers["x-presence-status"]]), [["", undefined], [undefined, "away"]]);
  eq(room.meta, { status: "away" });
  server.last.drop();
  await until(() => server.sockets.length === 2 && room.joined, "the rejoin");
  sub = server.last.sentFrames("SUBSCRIBE", "/room/lobby")[0];
  eq([sub.headers["x-presence-status"], sub.headers["x-presence-typing"]], ["away", undefined]);
  throws(() => client.joinRoom("lobby"), /already in room/);
  room.leave();
  const unsubs = server.last.sentFrames("UNSUBSCRIBE").map((f) => f.headers.id);
  eq(unsubs.length, 2, "room and presence");
  eq(client.rooms.size, 0);
  client.joinRoom("lobby").leave(); // joining again is fine
  await client.disconnect();
});

test("room: presence messages reach the room's Presence and onPresence", async () => {
  const server = roomServer();
  const client = makeClient(server);
  const seen = [];
  const room = client.joinRoom("lobby", { onPresence: (p, c) => seen.push([p.count, c.type]) });
  await client.connect();
  await room.ready;
  const sub = server.last.sentFrames("SUBSCRIBE", "/presence/lobby")[0];
  server.last.deliver("MESSAGE", { subscription: sub.headers.id, "x-presence": "state", "x-presence-count": "1", "content-type": "application/json" }, '{"count":1,"members":{"alice":{"connections":1,"meta":{}}}}');
  server.last.deliver("MESSAGE", { subscription: sub.headers.id, "x-presence": "diff", "x-presence-count": "2" }, '{"count":2,"joins":{"bob":{"connections":1,"meta":{"typing":"true"}}},"leaves":{},"updates":{}}');
  eq(seen, [[1, "state"], [2, "diff"]]);
  eq(room.presence.list().map((m) => m.user), ["alice", "bob"]);
  await client.disconnect();
});

test("existing API: subscribe, receipts as promises, ERROR rejects", async () => {
  const server = new FakeServer();
  server.onFrame = (socket, frame) => {
    if (frame.command === "SEND" && frame.headers.destination === "/queue/bad") {
      socket.deliver("ERROR", { message: "nope", "receipt-id": frame.headers.receipt });
      return true;
    }
    if (frame.command === "SEND") {
      socket.deliver("MESSAGE", { subscription: "s1", "message-id": "1", destination: frame.headers.destination }, frame.body);
      if (frame.headers.receipt) socket.deliver("RECEIPT", { "receipt-id": frame.headers.receipt });
      return true;
    }
    return false;
  };
  const client = makeClient(server, { reconnect: false });
  const got = [];
  client.subscribe("/topic/a", (m) => got.push(m.body), { id: "s1" });
  await client.connect();
  await client.send("/topic/a", { x: 1 }, { receipt: true });
  eq(got, ['{"x":1}']);
  let error = null;
  await client.send("/queue/bad", "x", { receipt: true }).catch((e) => (error = e));
  assert(error instanceof StompError && error.message === "nope", "ERROR rejects the receipt");
  await client.disconnect();
});
