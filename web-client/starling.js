// starling.js: a dependency-free STOMP 1.2 (1.1, 1.0) client over WebSocket, as an ES module, with chat
// rooms (history, resume after reconnect, presence).
//
//   import { StarlingClient } from "/starling.js";
//   const client = new StarlingClient("ws://127.0.0.1:8080/ws", { reconnect: true });
//   await client.connect({ login: "alice" });            // the login is your user name in rooms
//   const sub = client.subscribe("/topic/chat.lobby", (msg) => console.log(msg.headers, msg.body));
//   await client.send("/topic/chat.lobby", "hello", { receipt: true });
//   sub.unsubscribe();
//
// Rooms (docs/rooms.md): `joinRoom` subscribes to /room/<name> (and /presence/<name>), asks for history on
// the first join, remembers the last (epoch, offset) delivered and resumes from it after a reconnect
// (`x-resume-from`), never delivering a message twice. When the server cannot resume (`x-recovered:false`),
// the room emits "reset" and reloads the history.
//
//   const room = client.joinRoom("lobby", {
//     history: 50,                                       // x-history on the first join (and after a reset)
//     meta: { status: "online" },                        // x-presence-status:online
//     onMessage: (m) => console.log(m.user, m.body, m.offset, m.isHistory),
//     onPresence: (presence, change) => console.log(presence.count, presence.list(), change),
//     onReset: (info) => console.log("history lost, reloading", info),
//   });
//   await room.ready;                                    // the first join's RECEIPT
//   await room.send("hi", { receipt: true });
//   room.setMeta({ typing: true });                      // later: room.setMeta({ typing: null }) removes it
//   room.leave();
//   await client.disconnect();
//
// Heart-beats tolerate throttled background tabs: the client offers to send every 30 s (the server allows
// 1.5x that), also answers the server's heart-beats as they arrive (network events are not throttled), and
// judges the server's silence by elapsed time minus its own timer's lateness, so a tick that a browser
// delayed (to once a second or once a minute) never declares the server dead.
//
// Other brokers: the standard STOMP features work with any broker (tests/browser/test_interop_rabbitmq.py runs
// them against RabbitMQ Web-STOMP). RabbitMQ reads `host` as its virtual host: connect({ host: "/", ... }). A
// broker that answers a bad frame with an ERROR without `receipt-id` and keeps the connection open (RabbitMQ does)
// never answers that frame's receipt: set the `receiptTimeout` option so such promises are rejected.
//
// Layers, bottom up: header escaping, `encodeFrame` / `FrameParser` (the wire codec, no I/O),
// `Frame` (a received frame), `Presence` (a member list from presence-state/diff messages, no I/O),
// `StarlingClient` (connection, heart-beats, subscriptions, receipts, reconnect), `Room`.

const NUL = 0, LF = 10, CR = 13;
const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder("utf-8");
const now = () => (globalThis.performance?.now ? performance.now() : Date.now());

/** An error in STOMP framing (received or to be sent). */
export class StompError extends Error {
  constructor(message, frame) {
    super(message);
    this.name = "StompError";
    if (frame) this.frame = frame;
  }
}

// ---------------------------------------------------------------------------------------------
// Header escaping (STOMP 1.2 "Value Encoding"; 1.1 has the same without \r; 1.0 has none).
// CONNECT and CONNECTED frames are never escaped.

const ESCAPES = { "\\": "\\\\", "\r": "\\r", "\n": "\\n", ":": "\\c" };
const UNESCAPES = { "\\": "\\", r: "\r", n: "\n", c: ":" };

export function escapeHeader(value) {
  return value.replace(/[\\\r\n:]/g, (ch) => ESCAPES[ch]);
}

export function unescapeHeader(value) {
  if (value.indexOf("\\") < 0) return value;
  return value.replace(/\\(.?)/gs, (seq, ch) => {
    const out = UNESCAPES[ch];
    if (out === undefined) throw new StompError(`undefined escape sequence '${seq}' in header`);
    return out;
  });
}

const isUnescapedCommand = (command) => command === "CONNECT" || command === "CONNECTED" || command === "STOMP";

function isBinary(body) {
  return body instanceof ArrayBuffer || ArrayBuffer.isView(body);
}

function toBytes(data) {
  if (typeof data === "string") return textEncoder.encode(data);
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  throw new TypeError("expected a string, ArrayBuffer or typed array");
}

// ---------------------------------------------------------------------------------------------
// Encoder

/**
 * Encodes one frame. `frame` is `{ command, headers, body }`; `headers` is an object (values are
 * stringified, `undefined`/`null` skipped); `body` is a string, an ArrayBuffer, a typed array or absent.
 * A `content-length` header is computed for every non-empty body (any given one is replaced).
 * Returns a string for a text body (send it as a text WebSocket message) and a Uint8Array for a binary
 * body (send it as a binary message).
 * Options: `escape` (default: true except for CONNECT/CONNECTED/STOMP; use false for STOMP 1.0).
 */
export function encodeFrame(frame, options = {}) {
  const { command, headers = {}, body = "" } = frame;
  const escape = options.escape ?? !isUnescapedCommand(command);
  const binary = isBinary(body);
  const bodyBytes = binary ? toBytes(body) : null;
  const length = binary ? bodyBytes.length : (body ? textEncoder.encode(body).length : 0);
  let head = command + "\n";
  for (const [name, raw] of Object.entries(headers)) {
    if (raw === undefined || raw === null || name === "content-length") continue;
    const value = String(raw);
    if (escape) {
      head += escapeHeader(name) + ":" + escapeHeader(value) + "\n";
    } else {
      if (/[\r\n:]/.test(name) || /[\r\n]/.test(value)) {
        throw new StompError(`header '${name}' cannot be sent unescaped in ${command}`);
      }
      head += name + ":" + value + "\n";
    }
  }
  if (length > 0) head += `content-length:${length}\n`;
  head += "\n";
  if (!binary) return head + body + "\0";
  const headBytes = textEncoder.encode(head);
  const out = new Uint8Array(headBytes.length + bodyBytes.length + 1);
  out.set(headBytes, 0);
  out.set(bodyBytes, headBytes.length);
  return out; // last byte is already NUL
}

// ---------------------------------------------------------------------------------------------
// Received frames

/** A received frame. `body` is the UTF-8 decoded text (decoded on first use), `binaryBody` the raw bytes. */
export class Frame {
  constructor(command, headers, binaryBody) {
    this.command = command;
    this.headers = headers;
    this.binaryBody = binaryBody;
    this._text = undefined;
  }
  get body() {
    if (this._text === undefined) this._text = this.binaryBody.length ? textDecoder.decode(this.binaryBody) : "";
    return this._text;
  }
  /** Parses the body as JSON. */
  json() {
    return JSON.parse(this.body);
  }
}

// ---------------------------------------------------------------------------------------------
// Incremental parser

/**
 * Incremental STOMP frame parser. Feed it every WebSocket message (string, ArrayBuffer or typed array)
 * with `push(data)`; it calls `onFrame(frame)` for every complete frame and `onHeartbeat()` for every EOL
 * between frames. A frame may be split across any number of pushes and one push may hold many frames.
 * Malformed input throws a StompError (the connection should then be closed).
 * Options: `onFrame`, `onHeartbeat`, `version` ("1.2" default: full unescaping; "1.1": no \r; "1.0": none),
 * `maxFrameSize` (bytes of one frame before an error, default 64 MiB).
 */
export class FrameParser {
  constructor(options = {}) {
    this.onFrame = options.onFrame || (() => {});
    this.onHeartbeat = options.onHeartbeat || (() => {});
    this.version = options.version || "1.2";
    this.maxFrameSize = options.maxFrameSize ?? 64 * 1024 * 1024;
    this.reset();
  }

  /** Drops any partial frame. */
  reset() {
    this._buf = new Uint8Array(0); // bytes; [_pos, _len) not yet consumed
    this._pos = 0;
    this._len = 0;
    this._owned = false; // whether _buf is our own (growable) buffer or the caller's chunk
    this._frame = null; // { command, headers, bodyStart, contentLength } once the headers are parsed
    this._scan = 0; // where to resume searching for the end of headers / the NUL
  }

  /** Bytes of an incomplete frame held. */
  get pending() {
    return this._len - this._pos;
  }

  push(data) {
    const chunk = toBytes(data);
    if (chunk.length === 0) return;
    if (this._len === this._pos) {
      // Nothing pending: parse straight from the chunk.
      this._scan -= this._pos;
      if (this._frame) this._frame.bodyStart -= this._pos;
      this._buf = chunk;
      this._pos = 0;
      this._len = chunk.length;
      this._owned = false;
    } else {
      this._append(chunk);
    }
    try {
      this._parse();
    } catch (error) {
      this.reset();
      throw error;
    }
    if (this._len === this._pos) {
      this._pos = this._len = this._scan = 0;
      if (this._owned && this._buf.length > 1 << 20) this._buf = new Uint8Array(0);
    } else if (!this._owned) {
      this._compact(0); // keep a private copy of the remainder: the caller's chunk is not ours
    }
    if (this.pending > this.maxFrameSize) {
      this.reset();
      throw new StompError(`frame larger than ${this.maxFrameSize} bytes`);
    }
  }

  _append(chunk) {
    if (!this._owned || this._len + chunk.length > this._buf.length) this._compact(chunk.length);
    this._buf.set(chunk, this._len);
    this._len += chunk.length;
  }

  // Moves the pending bytes to the start of an owned buffer with room for `extra` more bytes.
  _compact(extra) {
    const pending = this._len - this._pos;
    let target = this._buf;
    if (!this._owned || pending + extra > this._buf.length) {
      target = new Uint8Array(Math.max(4096, (pending + extra) * 2));
    }
    target.set(this._buf.subarray(this._pos, this._len), 0);
    this._scan -= this._pos;
    if (this._frame) this._frame.bodyStart -= this._pos;
    this._buf = target;
    this._owned = true;
    this._len = pending;
    this._pos = 0;
  }

  _parse() {
    const buf = this._buf;
    for (;;) {
      if (!this._frame) {
        // Between frames: EOLs are heart-beats.
        let pos = this._pos;
        while (pos < this._len) {
          if (buf[pos] === LF) { pos += 1; this._pos = pos; this.onHeartbeat(); continue; }
          if (buf[pos] === CR) {
            if (pos + 1 >= this._len) return; // wait for the LF
            if (buf[pos + 1] !== LF) throw new StompError("CR not followed by LF between frames");
            pos += 2; this._pos = pos; this.onHeartbeat(); continue;
          }
          break;
        }
        if (pos >= this._len) return;
        if (this._scan < this._pos) this._scan = this._pos;
        // Find the empty line ending the headers: "\n\n" or "\n\r\n".
        let end = -1, bodyStart = -1;
        let i = this._scan;
        for (; i < this._len; i++) {
          if (buf[i] !== LF) continue;
          if (i + 1 >= this._len) break;
          if (buf[i + 1] === LF) { end = i; bodyStart = i + 2; break; }
          if (buf[i + 1] === CR) {
            if (i + 2 >= this._len) break;
            if (buf[i + 2] === LF) { end = i; bodyStart = i + 3; break; }
          }
        }
        if (end < 0) { this._scan = Math.max(this._pos, i); return; }
        this._frame = this._parseHead(buf.subarray(this._pos, end));
        this._frame.bodyStart = bodyStart;
        this._scan = bodyStart;
      }
      // Body: content-length bytes then NUL, or everything up to the first NUL.
      const frame = this._frame;
      let nul;
      if (frame.contentLength >= 0) {
        nul = frame.bodyStart + frame.contentLength;
        if (nul >= this._len) return;
        if (buf[nul] !== NUL) throw new StompError(`frame body longer than its content-length (${frame.contentLength})`);
      } else {
        nul = buf.indexOf(NUL, this._scan);
        if (nul < 0 || nul >= this._len) { this._scan = this._len; return; }
      }
      const body = buf.slice(frame.bodyStart, nul);
      this._pos = nul + 1;
      this._scan = this._pos;
      this._frame = null;
      this.onFrame(new Frame(frame.command, frame.headers, body));
    }
  }

  _parseHead(bytes) {
    const lines = textDecoder.decode(bytes).split("\n");
    const command = lines[0].endsWith("\r") ? lines[0].slice(0, -1) : lines[0];
    if (!command) throw new StompError("empty command");
    const unescape = !isUnescapedCommand(command) && this.version !== "1.0";
    const headers = {};
    for (let n = 1; n < lines.length; n++) {
      let line = lines[n];
      if (line.endsWith("\r")) line = line.slice(0, -1);
      const colon = line.indexOf(":");
      if (colon < 0) throw new StompError(`header line without ':' in ${command}`);
      let name = line.slice(0, colon), value = line.slice(colon + 1);
      if (unescape) { name = unescapeHeader(name); value = unescapeHeader(value); }
      // STOMP 1.2: when a header is repeated, the first occurrence wins.
      if (!Object.prototype.hasOwnProperty.call(headers, name) && name !== "__proto__") headers[name] = value;
    }
    let contentLength = -1;
    if (headers["content-length"] !== undefined) {
      if (!/^\d+$/.test(headers["content-length"])) throw new StompError(`invalid content-length '${headers["content-length"]}'`);
      contentLength = Number(headers["content-length"]);
    }
    return { command, headers, bodyStart: 0, contentLength };
  }
}

// ---------------------------------------------------------------------------------------------
// Heart-beat negotiation (STOMP 1.2 "Heart-beating")

/** Parses a `heart-beat` header "x,y" into [x, y] (0,0 when absent or invalid). */
export function parseHeartbeat(value) {
  const m = /^\s*(\d+)\s*,\s*(\d+)\s*$/.exec(value || "");
  return m ? [Number(m[1]), Number(m[2])] : [0, 0];
}

/**
 * Given the client's [cx, cy] and the server's [sx, sy], returns `{ outgoing, incoming }` in ms
 * (0 = none): the client sends at least every `outgoing` ms and expects data at least every `incoming` ms.
 */
export function negotiateHeartbeat([cx, cy], [sx, sy]) {
  return {
    outgoing: cx === 0 || sy === 0 ? 0 : Math.max(cx, sy),
    incoming: sx === 0 || cy === 0 ? 0 : Math.max(sx, cy),
  };
}

// ---------------------------------------------------------------------------------------------
// Presence (docs/rooms.md "/presence/<name>"), no I/O

const hasOwn = (object, key) => Object.prototype.hasOwnProperty.call(object, key);

/**
 * A room's member list, kept from `presence-state` and `presence-diff` messages. Feed it every MESSAGE of a
 * /presence/<name> subscription with `apply(message)` (a Frame, or `{ type, data }` with type "state",
 * "diff" or "count" and the parsed JSON body). `members` maps each user to `{ connections, meta }`; meta
 * values are strings, as they travel in `x-presence-<key>` headers. `onChange(presence, change)` is called
 * after every message with `change = { type, joins, leaves, updates, count }` (arrays of user names; a new
 * state, e.g. after a reconnect, is reported as the joins/leaves/updates against the previous list).
 */
export class Presence {
  constructor(options = {}) {
    this.onChange = options.onChange || null;
    this.members = new Map();
    this.count = 0;
    this.mode = "full"; // "count" when the subscription asked for x-presence-mode:count
    this.ready = false; // a state was received
  }

  /** Forgets everything (e.g. when the subscription ends). */
  reset() {
    this.members = new Map();
    this.count = 0;
    this.ready = false;
  }

  has(user) {
    return this.members.has(user);
  }

  get(user) {
    return this.members.get(user);
  }

  /** `[{ user, connections, meta }]` sorted by user name. */
  list() {
    return [...this.members].map(([user, m]) => ({ user, connections: m.connections, meta: m.meta }))
      .sort((a, b) => (a.user < b.user ? -1 : a.user > b.user ? 1 : 0));
  }

  /** Applies one presence message; returns the change (also passed to `onChange`). */
  apply(message) {
    let type, data, headerCount;
    if (message && message.headers && typeof message.json === "function") {
      type = message.headers["x-presence"];
      data = message.body ? message.json() : {};
      headerCount = message.headers["x-presence-count"];
    } else {
      ({ type, data = {} } = message || {});
    }
    if (!data || typeof data !== "object") throw new StompError("presence message body is not a JSON object");
    if (!type) type = data.members ? "state" : data.joins || data.leaves || data.updates ? "diff" : "count";
    const change = { type, joins: [], leaves: [], updates: [], count: 0 };
    const entry = (value) => ({
      connections: Number(value?.connections) || 1,
      meta: value?.meta && typeof value.meta === "object" ? { ...value.meta } : {},
    });
    if (type === "state") {
      this.mode = data.members ? "full" : "count";
      const next = new Map();
      for (const [user, value] of Object.entries(data.members || {})) next.set(user, entry(value));
      for (const [user, value] of next) {
        const old = this.members.get(user);
        if (!old) change.joins.push(user);
        else if (JSON.stringify(old.meta) !== JSON.stringify(value.meta)) change.updates.push(user);
      }
      for (const user of this.members.keys()) if (!next.has(user)) change.leaves.push(user);
      this.members = next;
      this.ready = true;
    } else if (type === "diff") {
      for (const user of Object.keys(data.leaves || {})) {
        if (this.members.delete(user)) change.leaves.push(user);
      }
      for (const [user, value] of Object.entries(data.joins || {})) {
        this.members.set(user, entry(value));
        change.joins.push(user);
      }
      for (const [user, value] of Object.entries(data.updates || {})) {
        const old = this.members.get(user);
        const updated = entry(value);
        if (old && !(value && hasOwn(value, "connections"))) updated.connections = old.connections;
        this.members.set(user, updated);
        change.updates.push(user);
      }
    } else if (type !== "count") {
      throw new StompError(`unknown presence message type '${type}'`);
    }
    const count = Number(data.count ?? headerCount);
    this.count = Number.isFinite(count) ? count : this.members.size;
    change.count = this.count;
    this.onChange?.(this, change);
    return change;
  }
}

// ---------------------------------------------------------------------------------------------
// Client

const DEFAULTS = {
  protocols: ["v12.stomp", "v11.stomp", "v10.stomp"],
  // [send at least every, want to receive at least every] in ms (0 = never), or { outgoing, incoming }. The
  // generous send interval keeps a background tab whose timers are throttled from being cut off by the server.
  heartbeat: [30000, 10000],
  heartbeatMargin: 2000, // extra silence tolerated on top of 2x the incoming interval
  connectTimeout: 10000,
  disconnectTimeout: 3000, // how long disconnect() waits for the DISCONNECT receipt
  receiptTimeout: 0, // 0 = receipts never time out (they are rejected when the connection ends)
  reconnect: false, // true, or { initialDelay, maxDelay, factor, jitter, maxAttempts, stableAfter }
  maxFrameSize: 64 * 1024 * 1024,
  debug: null, // function(message) for a trace of frames and state changes
  WebSocket: null, // WebSocket constructor, default globalThis.WebSocket
};

const RECONNECT_DEFAULTS = { initialDelay: 1000, maxDelay: 30000, factor: 2, jitter: 0.3, maxAttempts: Infinity, stableAfter: 10000 };

/** Client states, as reported by `client.state` and the "state" event. */
export const State = Object.freeze({
  DISCONNECTED: "disconnected",
  CONNECTING: "connecting",
  CONNECTED: "connected",
  RECONNECTING: "reconnecting", // waiting before the next attempt
  DISCONNECTING: "disconnecting",
});

/**
 * A STOMP client over one WebSocket. Events (`on(name, fn)` returns a function that removes the listener):
 *   "connect"  (connectedFrame, { reconnected })  after every CONNECTED, subscriptions already restored
 *   "close"    ({ code, reason, wasClean, wasConnected, willReconnect })  the WebSocket closed or was declared
 *             dead (wasConnected: it had reached CONNECTED; a failed attempt has false)
 *   "error"    (error)  ERROR frames (error.frame), protocol errors, exceptions thrown by callbacks
 *   "state"    (state, previousState)  see `State`
 *   "frame"    (frame)  frames no subscription or receipt took (e.g. a MESSAGE for an unknown subscription)
 */
export class StarlingClient {
  constructor(url, options = {}) {
    this.url = url;
    this.options = { ...DEFAULTS, ...options };
    const hb = this.options.heartbeat;
    this.options.heartbeat = Array.isArray(hb) ? hb.map(Number) : hb ? [Number(hb.outgoing) || 0, Number(hb.incoming) || 0] : [0, 0];
    if (this.options.reconnect) {
      this.options.reconnect = { ...RECONNECT_DEFAULTS, ...(this.options.reconnect === true ? {} : this.options.reconnect) };
    }
    this.state = State.DISCONNECTED;
    this.version = null; // negotiated STOMP version once connected
    this.connectedFrame = null;
    this.heartbeat = { outgoing: 0, incoming: 0 }; // negotiated intervals (ms)
    this._listeners = new Map();
    this._subscriptions = new Map(); // id -> Subscription, kept across reconnects
    this._receipts = new Map(); // receipt id -> { resolve, reject, timer }
    this._ids = 0;
    this._ws = null;
    this._parser = null;
    this._connectHeaders = {};
    this._connectWaiters = []; // pending connect() promises
    this._attempts = 0;
    this._reconnectTimer = null;
    this._hbTimer = null;
    this._wanted = false; // the user wants to be connected (connect() called, disconnect() not)
    this._everConnected = false;
    this._rooms = new Map(); // name -> Room
  }

  get connected() {
    return this.state === State.CONNECTED;
  }

  // ---- events

  on(event, fn) {
    if (!this._listeners.has(event)) this._listeners.set(event, new Set());
    this._listeners.get(event).add(fn);
    return () => this.off(event, fn);
  }

  off(event, fn) {
    this._listeners.get(event)?.delete(fn);
  }

  _emit(event, ...args) {
    const set = this._listeners.get(event);
    if (!set || set.size === 0) {
      if (event === "error") this._debug("unhandled error:", args[0]?.message || args[0]);
      return;
    }
    for (const fn of [...set]) {
      try {
        fn(...args);
      } catch (error) {
        if (event === "error") console.error(error);
        else this._emit("error", error);
      }
    }
  }

  _debug(...args) {
    if (this.options.debug) this.options.debug(args.join(" "));
  }

  _setState(state) {
    if (state === this.state) return;
    const previous = this.state;
    this.state = state;
    this._debug("state", previous, "->", state);
    this._emit("state", state, previous);
  }

  // ---- connecting

  /**
   * Opens the WebSocket and sends CONNECT with `headers` (e.g. `login`, `passcode`, `host`). Resolves with
   * the CONNECTED frame. With `reconnect` on, failed attempts are retried with backoff and the promise
   * resolves on the first success; it rejects on an ERROR reply to CONNECT or when `disconnect()` is called.
   */
  connect(headers = {}) {
    this._connectHeaders = { ...headers };
    this._wanted = true;
    const promise = new Promise((resolve, reject) => this._connectWaiters.push({ resolve, reject }));
    if (this.state === State.CONNECTED) {
      this._settleConnect(null, this.connectedFrame);
    } else if (this.state === State.DISCONNECTED || this.state === State.RECONNECTING) {
      clearTimeout(this._reconnectTimer);
      this._open();
    }
    return promise;
  }

  _settleConnect(error, frame) {
    const waiters = this._connectWaiters;
    this._connectWaiters = [];
    for (const w of waiters) error ? w.reject(error) : w.resolve(frame);
  }

  _open() {
    const WS = this.options.WebSocket || globalThis.WebSocket;
    if (!WS) throw new Error("no WebSocket implementation available (pass options.WebSocket)");
    this._setState(State.CONNECTING);
    let ws;
    try {
      ws = new WS(this.url, this.options.protocols);
    } catch (error) {
      this._fatal = error; // e.g. an invalid URL: retrying cannot help
      this._emit("error", error);
      this._onClose(null, { code: 1006, reason: String(error.message || error), wasClean: false });
      return;
    }
    ws.binaryType = "arraybuffer";
    this._ws = ws;
    this._parser = new FrameParser({
      maxFrameSize: this.options.maxFrameSize,
      onFrame: (frame) => this._onFrame(frame),
      onHeartbeat: () => {},
    });
    this._lastReceived = this._lastSent = this._lastTick = now();
    this._connectTimer = setTimeout(() => {
      this._emit("error", new StompError(`no CONNECTED within ${this.options.connectTimeout} ms`));
      this._drop(ws, 4000, "connect timeout");
    }, this.options.connectTimeout);

    ws.onopen = () => {
      if (ws !== this._ws) return;
      const [cx, cy] = this.options.heartbeat;
      let host = this._connectHeaders.host;
      if (host === undefined) {
        try { host = new URL(this.url).hostname; } catch { host = "/"; }
      }
      // The subprotocol the server chose caps the STOMP version; none chosen = any.
      const accept = { "v10.stomp": "1.0", "v11.stomp": "1.1,1.0" }[ws.protocol] || "1.2,1.1,1.0";
      this._transmit("CONNECT", { "accept-version": accept, host, "heart-beat": `${cx},${cy}`, ...this._connectHeaders });
    };
    ws.onmessage = (event) => {
      if (ws !== this._ws) return;
      this._lastReceived = now();
      try {
        this._parser.push(event.data);
      } catch (error) {
        this._emit("error", error instanceof StompError ? error : new StompError(String(error)));
        this._drop(ws, 1002, "STOMP protocol error");
        return;
      }
      // Incoming data is not subject to timer throttling in background tabs: use it to keep our
      // outgoing heart-beats on time too.
      this._maybeSendHeartbeat(this._lastReceived, this.heartbeat.outgoing / 2);
    };
    ws.onerror = () => {
      // The close event follows and carries the details.
    };
    ws.onclose = (event) => {
      if (ws !== this._ws) return;
      this._onClose(ws, event);
    };
  }

  // Declares the WebSocket dead without waiting for the closing handshake (it may never come).
  _drop(ws, code, reason) {
    if (ws !== this._ws) return;
    try { ws.close(code >= 3000 || code === 1000 ? code : 1000, reason); } catch { /* ignore */ }
    this._onClose(ws, { code: code === 1002 ? 1002 : 1006, reason, wasClean: false });
  }

  _onClose(ws, event) {
    if (ws) { ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null; }
    this._ws = null;
    clearTimeout(this._connectTimer);
    this._stopHeartbeats();
    const wasConnected = this.state === State.CONNECTED;
    const connectedFor = wasConnected ? now() - this._connectedAt : 0;
    this.connectedFrame = null;
    const closeError = new StompError(`connection closed (${event.code}${event.reason ? " " + event.reason : ""})`);
    for (const [id, r] of this._receipts) {
      clearTimeout(r.timer);
      r.reject(closeError);
      this._receipts.delete(id);
    }
    const rc = this.options.reconnect;
    if (wasConnected && connectedFor >= (rc?.stableAfter ?? 0)) this._attempts = 0;
    const willReconnect = Boolean(rc && this._wanted && !this._fatal && this._attempts < rc.maxAttempts);
    this._emit("close", { code: event.code, reason: event.reason || "", wasClean: Boolean(event.wasClean), wasConnected, willReconnect });
    if (willReconnect) {
      const delay = Math.min(rc.maxDelay, rc.initialDelay * rc.factor ** this._attempts);
      const jittered = Math.round(delay * (1 - rc.jitter / 2 + Math.random() * rc.jitter));
      this._attempts += 1;
      this._setState(State.RECONNECTING);
      this._debug("reconnecting in", jittered, "ms");
      this._reconnectTimer = setTimeout(() => {
        if (this._wanted && this.state === State.RECONNECTING) this._open();
      }, jittered);
    } else {
      this._setState(State.DISCONNECTED);
      const error = this._fatal || closeError;
      this._fatal = null;
      this._settleConnect(error);
      for (const sub of this._subscriptions.values()) {
        sub._receiptWanted?.reject(error);
        sub._receiptWanted = null;
      }
      this._wanted = false;
      this._settleDisconnect();
    }
  }

  // ---- frames in

  _onFrame(frame) {
    this._debug("<<<", frame.command, JSON.stringify(frame.headers));
    switch (frame.command) {
      case "CONNECTED":
        return this._onConnected(frame);
      case "MESSAGE": {
        const sub = this._subscriptions.get(frame.headers.subscription);
        if (!sub) return this._emit("frame", frame);
        this._decorate(frame, sub);
        try {
          sub.callback(frame);
        } catch (error) {
          this._emit("error", error);
        }
        return;
      }
      case "RECEIPT": {
        const r = this._receipts.get(frame.headers["receipt-id"]);
        if (!r) return this._emit("frame", frame);
        this._receipts.delete(frame.headers["receipt-id"]);
        clearTimeout(r.timer);
        if (r.sync) {
          try {
            r.sync(frame); // before any frame that follows in the same WebSocket message
          } catch (error) {
            this._emit("error", error);
          }
        }
        r.resolve(frame);
        return;
      }
      case "ERROR": {
        const error = new StompError(frame.headers.message || frame.body || "ERROR frame", frame);
        const r = this._receipts.get(frame.headers["receipt-id"]);
        if (r) {
          this._receipts.delete(frame.headers["receipt-id"]);
          clearTimeout(r.timer);
          r.reject(error);
        }
        if (this.state === State.CONNECTING) this._fatal = error; // rejected CONNECT: do not retry
        this._emit("error", error);
        return; // the server closes the connection after an ERROR
      }
      default:
        return this._emit("frame", frame);
    }
  }

  _onConnected(frame) {
    clearTimeout(this._connectTimer);
    this.version = frame.headers.version || "1.0";
    this._parser.version = this.version;
    this.connectedFrame = frame;
    this._connectedAt = now();
    this.heartbeat = negotiateHeartbeat(this.options.heartbeat, parseHeartbeat(frame.headers["heart-beat"]));
    this._startHeartbeats();
    const reconnected = this._everConnected;
    this._everConnected = true;
    this._setState(State.CONNECTED);
    // A snapshot: a subscription added while restoring (a room rejoining) is sent by its own subscribe.
    for (const sub of [...this._subscriptions.values()]) {
      if (sub.active && this.state === State.CONNECTED) this._sendSubscribe(sub);
    }
    this._settleConnect(null, frame);
    this._emit("connect", frame, { reconnected });
  }

  _decorate(message, sub) {
    message.subscription = sub;
    const ackId = message.headers.ack;
    const id = this.version === "1.2" ? { id: ackId } : { "message-id": message.headers["message-id"], subscription: sub.id };
    message.ack = (headers = {}) => this._transmit("ACK", { ...id, ...headers });
    message.nack = (headers = {}) => this._transmit("NACK", { ...id, ...headers });
  }

  // ---- frames out

  _transmit(command, headers = {}, body = "") {
    const ws = this._ws;
    if (!ws || ws.readyState !== 1) throw new StompError(`cannot send ${command}: not connected`);
    const data = encodeFrame({ command, headers, body }, this.version === "1.0" ? { escape: false } : {});
    this._debug(">>>", command, JSON.stringify(headers));
    ws.send(data);
    this._lastSent = now();
  }

  _requireConnected(what) {
    if (this.state !== State.CONNECTED) throw new StompError(`cannot ${what}: not connected (${this.state})`);
  }

  // Splits the `receipt` option out of headers; returns [headers, receiptPromise | undefined].
  _withReceipt(headers) {
    const { receipt, ...rest } = headers;
    if (receipt === undefined || receipt === false || receipt === null) return [rest, undefined];
    const id = receipt === true ? `r-${++this._ids}` : String(receipt);
    const promise = new Promise((resolve, reject) => {
      const entry = { resolve, reject, timer: null };
      if (this.options.receiptTimeout > 0) {
        entry.timer = setTimeout(() => {
          this._receipts.delete(id);
          reject(new StompError(`no RECEIPT for '${id}' within ${this.options.receiptTimeout} ms`));
        }, this.options.receiptTimeout);
      }
      this._receipts.set(id, entry);
    });
    rest.receipt = id;
    return [rest, promise];
  }

  /**
   * Sends `body` (string, ArrayBuffer or typed array; objects other than these are sent as JSON) to
   * `destination`. With `headers.receipt` (true or an id), returns a Promise of the RECEIPT frame,
   * rejected by an ERROR or by the end of the connection.
   */
  send(destination, body = "", headers = {}) {
    this._requireConnected("send");
    const h = { ...headers };
    if (body !== null && typeof body === "object" && !isBinary(body)) {
      body = JSON.stringify(body);
      if (h["content-type"] === undefined) h["content-type"] = "application/json";
    } else if (body !== null && body !== undefined && typeof body !== "string" && !isBinary(body)) {
      body = String(body);
    }
    if (h["content-type"] === undefined && body) {
      h["content-type"] = typeof body === "string" ? "text/plain;charset=utf-8" : "application/octet-stream";
    }
    const [wire, receipt] = this._withReceipt(h);
    this._transmit("SEND", { destination, ...wire }, body ?? "");
    return receipt;
  }

  /**
   * Subscribes `callback(message)` to `destination`. `message` is a Frame (`headers`, `body`, `binaryBody`,
   * `json()`) with `ack()`/`nack()` for the `client`/`client-individual` ack modes (`headers.ack`).
   * Returns a Subscription `{ id, destination, unsubscribe(headers) }`; with `headers.receipt` its
   * `receipt` property is a Promise of the RECEIPT frame. Subscriptions are restored after a reconnect.
   * May be called before `connect()` resolves: it is then sent on CONNECTED.
   */
  subscribe(destination, callback, headers = {}) {
    if (typeof callback !== "function") throw new TypeError("subscribe needs a callback");
    const { id = `sub-${++this._ids}`, receipt, ...rest } = headers;
    if (this._subscriptions.has(String(id))) throw new StompError(`subscription id '${id}' already in use`);
    const sub = new Subscription(this, String(id), destination, callback, rest);
    if (receipt !== undefined && receipt !== false && receipt !== null) {
      sub.receipt = new Promise((resolve, reject) => (sub._receiptWanted = { receipt, resolve, reject }));
    }
    this._subscriptions.set(sub.id, sub);
    // A socket already closing (state not yet updated) gets it on the next CONNECTED, like any restored one.
    if (this.state === State.CONNECTED && this._ws?.readyState === 1) this._sendSubscribe(sub);
    return sub;
  }

  _sendSubscribe(sub) {
    const wanted = sub._receiptWanted;
    sub._receiptWanted = null;
    // Internal subscriptions (rooms) want a RECEIPT for every SUBSCRIBE, handled synchronously (`_onReceipt`).
    const ask = wanted?.receipt ?? (sub._onReceipt ? true : undefined);
    const [wire, receipt] = this._withReceipt({ ...sub._wireHeaders(), receipt: ask });
    if (wanted) receipt.then(wanted.resolve, wanted.reject);
    if (receipt && sub._onReceipt) {
      this._receipts.get(wire.receipt).sync = (frame) => sub._onReceipt(frame);
      receipt.catch(() => {}); // a lost connection: the next SUBSCRIBE asks again
    }
    this._transmit("SUBSCRIBE", wire);
  }

  // Adds an internally built Subscription (see Room).
  _addSubscription(sub) {
    if (this._subscriptions.has(sub.id)) throw new StompError(`subscription id '${sub.id}' already in use`);
    this._subscriptions.set(sub.id, sub);
    // A socket already closing (state not yet updated) gets it on the next CONNECTED, like any restored one.
    if (this.state === State.CONNECTED && this._ws?.readyState === 1) this._sendSubscribe(sub);
    return sub;
  }

  _nextId(prefix) {
    return `${prefix}-${++this._ids}`;
  }

  _unsubscribe(sub, headers = {}) {
    if (this._subscriptions.get(sub.id) !== sub) return undefined;
    this._subscriptions.delete(sub.id);
    if (this.state !== State.CONNECTED) return headers.receipt ? Promise.resolve(null) : undefined;
    const [wire, receipt] = this._withReceipt(headers);
    this._transmit("UNSUBSCRIBE", { id: sub.id, ...wire });
    return receipt;
  }

  /** Active subscriptions. */
  get subscriptions() {
    return [...this._subscriptions.values()];
  }

  /**
   * Joins the chat room `name` (SUBSCRIBE to /room/<name>, see docs/rooms.md) and returns a `Room`. May be
   * called before `connect()`: the room joins on CONNECTED, and again after every reconnect (resuming where
   * it left off). Options:
   *   history     messages of history to ask for on the first join and after a reset (default 50; 0 = none)
   *   meta        your presence metadata, e.g. { status: "online" } (sent as x-presence-<key> headers)
   *   presence    also follow /presence/<name> (default true); "count" for x-presence-mode:count
   *   reload      after a reset (x-recovered:false), rejoin with `history` (default true)
   *   position    { epoch, offset } to resume from on the first join (e.g. kept in sessionStorage)
   *   onMessage(message)          a Frame with `room`, `user`, `offset`, `epoch`, `isHistory`
   *   onPresence(presence, change)
   *   onJoin(info)                every join: { epoch, offset, resumed, recovered (null when not resuming), receipt }
   *   onReset(info)               x-recovered:false: { epoch, offset, previous: { epoch, offset } }
   * The same callbacks are events: `room.on("message" | "presence" | "join" | "reset", fn)`.
   */
  joinRoom(name, options = {}) {
    name = String(name);
    const problem = roomNameProblem(name);
    if (problem) throw new StompError(`invalid room name '${name}': ${problem}`);
    if (this._rooms.has(name)) throw new StompError(`already in room '${name}' (leave it first)`);
    const room = new Room(this, name, options);
    this._rooms.set(name, room);
    room._start();
    return room;
  }

  /** Joined rooms, by name. */
  get rooms() {
    return new Map(this._rooms);
  }

  /** Starts a transaction: returns `{ id, send(destination, body, headers), commit(headers), abort(headers) }`. */
  begin(id = `tx-${++this._ids}`) {
    this._requireConnected("begin a transaction");
    this._transmit("BEGIN", { transaction: id });
    return {
      id,
      send: (destination, body, headers = {}) => this.send(destination, body, { ...headers, transaction: id }),
      commit: (headers = {}) => this._txEnd("COMMIT", id, headers),
      abort: (headers = {}) => this._txEnd("ABORT", id, headers),
    };
  }

  _txEnd(command, id, headers) {
    this._requireConnected(command.toLowerCase());
    const [wire, receipt] = this._withReceipt(headers);
    this._transmit(command, { transaction: id, ...wire });
    return receipt;
  }

  /** Acknowledges a message received in a `client`/`client-individual` subscription. */
  ack(message, headers = {}) {
    return message.ack(headers);
  }

  nack(message, headers = {}) {
    return message.nack(headers);
  }

  // ---- heart-beats

  _startHeartbeats() {
    this._stopHeartbeats();
    const { outgoing, incoming } = this.heartbeat;
    if (!outgoing && !incoming) return;
    // Tick often enough for both jobs; the decisions use elapsed time, so late (throttled) ticks are fine.
    const tick = Math.max(250, Math.min(outgoing || Infinity, incoming || Infinity) / 4);
    this._hbTick = tick;
    this._lastTick = now();
    this._hbTimer = setInterval(() => this._heartbeatTick(tick), tick);
    // A tab coming back to the foreground: send at once if anything is due, and forgive the pause.
    const doc = globalThis.document;
    if (doc?.addEventListener) {
      this._onVisibility = () => {
        if (doc.visibilityState !== "visible") return;
        this._maybeSendHeartbeat(now(), this.heartbeat.outgoing / 2);
        this._heartbeatTick(tick);
      };
      doc.addEventListener("visibilitychange", this._onVisibility);
    }
  }

  _stopHeartbeats() {
    clearInterval(this._hbTimer);
    this._hbTimer = null;
    if (this._onVisibility) {
      globalThis.document?.removeEventListener?.("visibilitychange", this._onVisibility);
      this._onVisibility = null;
    }
  }

  _maybeSendHeartbeat(t, slack) {
    const { outgoing } = this.heartbeat;
    if (!outgoing || this.state !== State.CONNECTED || !this._ws || this._ws.readyState !== 1) return;
    if (t - this._lastSent + slack >= outgoing) {
      this._ws.send("\n");
      this._lastSent = t;
    }
  }

  /**
   * One heart-beat check at time `t` (default: now). Browsers run timers of background tabs late (at most
   * once a second, or once a minute after a while) and a suspended machine runs them much later; frames may
   * then still be queued behind this very tick. So the server's silence is measured on the clock when the
   * tick finally runs, minus how late the tick itself is: only silence that a punctual timer would also have
   * seen counts, and the limit is 2x the interval plus `heartbeatMargin`.
   */
  _heartbeatTick(tick = this._hbTick, t = now()) {
    const lateness = Math.max(0, t - this._lastTick - tick);
    this._lastTick = t;
    this._maybeSendHeartbeat(t, tick);
    const { incoming } = this.heartbeat;
    if (!incoming || !this._ws) return;
    const silence = t - this._lastReceived;
    const limit = incoming * 2 + this.options.heartbeatMargin;
    if (silence - lateness > limit) {
      this._emit("error", new StompError(`server silent for ${Math.round(silence)} ms (heart-beat ${incoming} ms)`));
      this._drop(this._ws, 4001, "heart-beat timeout");
    }
  }

  // ---- disconnecting

  /**
   * Sends DISCONNECT, waits for its RECEIPT (at most `disconnectTimeout`), closes the WebSocket and stops
   * reconnecting. Resolves once closed.
   */
  disconnect(headers = {}) {
    this._wanted = false;
    clearTimeout(this._reconnectTimer);
    const done = new Promise((resolve) => (this._disconnectWaiters ||= []).push(resolve));
    const ws = this._ws;
    if (!ws) {
      this._setState(State.DISCONNECTED);
      this._settleConnect(new StompError("disconnected"));
      this._settleDisconnect();
      return done;
    }
    if (this.state === State.CONNECTED) {
      this._setState(State.DISCONNECTING);
      let receipt;
      try {
        [headers, receipt] = this._withReceipt({ receipt: true, ...headers });
        this._transmit("DISCONNECT", headers);
      } catch { /* closing anyway */ }
      const timeout = new Promise((resolve) => setTimeout(resolve, this.options.disconnectTimeout));
      Promise.race([receipt?.catch(() => {}), timeout]).then(() => this._drop(ws, 1000, "bye"));
    } else {
      this._settleConnect(new StompError("disconnected"));
      this._drop(ws, 1000, "bye");
    }
    return done;
  }

  _settleDisconnect() {
    const waiters = this._disconnectWaiters || [];
    this._disconnectWaiters = [];
    for (const resolve of waiters) resolve();
  }
}

/** One subscription; `unsubscribe(headers)` sends UNSUBSCRIBE (and returns a receipt Promise if asked). */
export class Subscription {
  constructor(client, id, destination, callback, headers) {
    this.client = client;
    this.id = id;
    this.destination = destination;
    this.callback = callback;
    this.headers = headers; // extra SUBSCRIBE headers (ack, selector, ...), re-sent on reconnect
    this.receipt = undefined;
  }

  get active() {
    return this.client._subscriptions.get(this.id) === this;
  }

  _wireHeaders() {
    const extra = this._dynamicHeaders ? this._dynamicHeaders() : this.headers; // rooms compute theirs per SUBSCRIBE
    return { id: this.id, destination: this.destination, ack: "auto", ...extra };
  }

  unsubscribe(headers = {}) {
    return this.client._unsubscribe(this, headers);
  }
}

// ---------------------------------------------------------------------------------------------
// Rooms (docs/rooms.md)

/** Why `name` cannot be a room name (1-200 bytes, no control characters, '/', '*' or '#'), or "". */
export function roomNameProblem(name) {
  const bytes = textEncoder.encode(name).length;
  if (bytes < 1 || bytes > 200) return "a room name has 1 to 200 bytes";
  if (/[\u0000-\u001f\u007f/*#]/.test(name)) return "no control characters, '/', '*' or '#'";
  return "";
}

/** `{ typing: true, away: null }` -> `{ "x-presence-typing": "true", "x-presence-away": "" }` (empty removes). */
export function presenceHeaders(meta) {
  const headers = {};
  for (const [key, value] of Object.entries(meta || {})) {
    headers[`x-presence-${key}`] = value === null || value === undefined || value === false ? "" : String(value);
  }
  return headers;
}

/**
 * A joined room; made by `client.joinRoom(name, options)`. Properties: `name`, `client`, `presence` (a
 * Presence, or null with `presence: false`), `meta` (your current metadata), `epoch` and `offset` (the last
 * position delivered or joined at; null before the first join), `joined` (joined on the current connection),
 * `ready` (a Promise of the first join's info), `duplicates` (messages dropped as already delivered).
 */
export class Room {
  constructor(client, name, options) {
    this.client = client;
    this.name = name;
    this.options = { history: 50, presence: true, reload: true, ...options };
    this.meta = {};
    for (const [key, value] of Object.entries(this.options.meta || {})) {
      if (value !== null && value !== undefined && value !== false && value !== "") this.meta[key] = String(value);
    }
    this.epoch = this.options.position?.epoch ?? null;
    this.offset = this.options.position ? Number(this.options.position.offset) : null;
    this.joined = false;
    this.left = false;
    this.duplicates = 0;
    this._listeners = new Map();
    for (const [event, option] of [["message", "onMessage"], ["presence", "onPresence"], ["join", "onJoin"], ["reset", "onReset"]]) {
      if (typeof this.options[option] === "function") this.on(event, this.options[option]);
    }
    this.presence = this.options.presence ? new Presence({ onChange: (p, change) => this._emit("presence", p, change) }) : null;
    this.ready = new Promise((resolve, reject) => (this._readyWaiter = { resolve, reject }));
    this.ready.catch(() => {});
    this._sub = null;
    this._presenceSub = null;
    this._offConnection = client.on("close", () => {
      this.joined = false;
    });
  }

  get destination() {
    return `/room/${this.name}`;
  }

  get presenceDestination() {
    return `/presence/${this.name}`;
  }

  /** `{ epoch, offset }` to resume from, or null. */
  get position() {
    return this.epoch === null || this.offset === null || !Number.isFinite(this.offset) ? null : { epoch: this.epoch, offset: this.offset };
  }

  on(event, fn) {
    if (!this._listeners.has(event)) this._listeners.set(event, new Set());
    this._listeners.get(event).add(fn);
    return () => this._listeners.get(event)?.delete(fn);
  }

  _emit(event, ...args) {
    for (const fn of [...(this._listeners.get(event) || [])]) {
      try {
        fn(...args);
      } catch (error) {
        this.client._emit("error", error);
      }
    }
  }

  _start() {
    if (this.presence) {
      const mode = this.options.presence === "count" ? { "x-presence-mode": "count" } : {};
      this._presenceSub = this.client.subscribe(this.presenceDestination, (message) => {
        try {
          this.presence.apply(message);
        } catch (error) {
          this.client._emit("error", error);
        }
      }, mode);
    }
    this._subscribeRoom();
  }

  // A new SUBSCRIBE to the room (its headers are computed each time it is sent: on CONNECTED too).
  _subscribeRoom() {
    const sub = new Subscription(this.client, this.client._nextId("room"), this.destination, (message) => this._onMessage(sub, message), {});
    sub._dynamicHeaders = () => {
      const headers = presenceHeaders(this.meta);
      const position = this.position;
      sub._attempt = { resumeFrom: null, reset: false };
      if (position) {
        sub._attempt.resumeFrom = `${position.epoch}:${position.offset}`;
        headers["x-resume-from"] = sub._attempt.resumeFrom;
      } else if (this.options.history > 0) {
        headers["x-history"] = String(Math.floor(this.options.history));
      }
      return headers;
    };
    sub._onReceipt = (frame) => this._onReceipt(sub, frame);
    const previous = this._sub;
    this._sub = sub;
    this.client._addSubscription(sub);
    // Leave with the old subscription only after joining with the new one: no leave/join blip for others.
    previous?.unsubscribe();
  }

  _onMessage(sub, message) {
    if (sub !== this._sub) return; // a subscription being replaced
    const h = message.headers;
    if (h["x-recovered"] === "false" && sub._attempt?.resumeFrom && !sub._attempt.reset) {
      if (this._reset(sub, h)) return;
    }
    const offset = h["x-offset"] === undefined ? NaN : Number(h["x-offset"]);
    const epoch = h["x-epoch"];
    if (epoch !== undefined && Number.isFinite(offset)) {
      if (epoch === this.epoch && this.offset !== null && offset <= this.offset) {
        this.duplicates += 1;
        return;
      }
      this.epoch = epoch;
      this.offset = offset;
    }
    message.room = this;
    message.user = h["user-name"];
    message.offset = Number.isFinite(offset) ? offset : null;
    message.epoch = epoch ?? null;
    message.isHistory = h["x-history"] === "true";
    this._emit("message", message);
  }

  _onReceipt(sub, frame) {
    if (sub !== this._sub) return;
    const h = frame.headers;
    const attempt = sub._attempt || { resumeFrom: null, reset: false };
    if (h["x-recovered"] === "false" && attempt.resumeFrom && !attempt.reset) {
      if (this._reset(sub, h)) return;
    }
    if (h["x-epoch"] !== undefined) {
      const offset = Number(h["x-offset"]);
      if (this.epoch !== h["x-epoch"]) {
        this.epoch = h["x-epoch"];
        this.offset = Number.isFinite(offset) ? offset : null;
      } else if (Number.isFinite(offset) && (this.offset === null || offset > this.offset)) {
        this.offset = offset; // everything up to the room's offset at join time was delivered or is older
      }
    }
    this.joined = true;
    const info = {
      epoch: this.epoch,
      offset: this.offset,
      resumed: attempt.resumeFrom !== null,
      recovered: attempt.resumeFrom !== null ? h["x-recovered"] !== "false" && !attempt.reset : null,
      receipt: frame,
    };
    this._readyWaiter?.resolve(info);
    this._readyWaiter = null;
    this._emit("join", info);
  }

  // x-recovered:false. Returns true when the subscription is replaced (the current message is dropped).
  _reset(sub, headers) {
    sub._attempt.reset = true;
    const offset = Number(headers["x-offset"]);
    const info = {
      epoch: headers["x-epoch"] ?? null,
      offset: Number.isFinite(offset) ? offset : null,
      previous: this.position,
    };
    this.epoch = null;
    this.offset = null;
    this._emit("reset", info);
    if (this.left || sub !== this._sub) return true;
    if (this.options.reload && this.options.history > 0 && this.client.state === State.CONNECTED) {
      this._subscribeRoom(); // joins again with x-history (no position any more)
      return true;
    }
    return false;
  }

  /** Sends `body` to the room (see `client.send`); `{ receipt: true }` returns a Promise of the RECEIPT. */
  send(body, headers = {}) {
    return this.client.send(this.destination, body, headers);
  }

  /**
   * Changes your metadata: `{ typing: true }` sets `typing` to "true"; null, undefined, false or "" remove the
   * key. Sent at once (SEND to /presence/<name>) when joined on the current connection, else applied with the
   * next join. `{ receipt: true }` in `options` returns a Promise of the RECEIPT.
   */
  setMeta(patch, options = {}) {
    let changed = false;
    for (const [key, value] of Object.entries(patch || {})) {
      const removed = value === null || value === undefined || value === false || value === "";
      if (removed ? hasOwn(this.meta, key) : this.meta[key] !== String(value)) changed = true;
      if (removed) delete this.meta[key];
      else this.meta[key] = String(value);
    }
    if (this.left || !this._sub?.active || this.client.state !== State.CONNECTED) return options.receipt ? Promise.resolve(null) : undefined;
    if (!changed && !options.force) return options.receipt ? Promise.resolve(null) : undefined;
    return this.client.send(this.presenceDestination, "", { ...presenceHeaders(patch), ...(options.receipt ? { receipt: options.receipt } : {}) });
  }

  /** Leaves the room (UNSUBSCRIBE from the room and its presence). */
  leave() {
    if (this.left) return;
    this.left = true;
    this.joined = false;
    this._offConnection();
    if (this.client._rooms.get(this.name) === this) this.client._rooms.delete(this.name);
    this._readyWaiter?.reject(new StompError(`left room '${this.name}'`));
    this._readyWaiter = null;
    this._sub?.unsubscribe();
    this._presenceSub?.unsubscribe();
    this.presence?.reset();
  }
}
