// starling.js against a third-party STOMP 1.2 broker (RabbitMQ Web-STOMP), standard features only.
// Driven by tests/browser/test_interop_rabbitmq.py: `await window.runCheck(name)` runs one check with its own
// connections and resolves with { ok, details } or { ok: false, error }. The broker is ?ws=<url>.

import { StarlingClient, StompError, negotiateHeartbeat, parseHeartbeat } from "./starling.js";

const WS_URL = new URLSearchParams(location.search).get("ws");
const LOGIN = { login: "guest", passcode: "guest", host: "/" }; // RabbitMQ reads `host` as the virtual host
const QUIET = 700; // ms of silence that counts as "nothing was delivered"

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const uniq = (prefix) => `${prefix}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
const utf8Length = (text) => new TextEncoder().encode(text).length;

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function assert(condition, message) {
  if (!condition) throw new Error(`assertion failed: ${message}`);
}

function eq(actual, expected, what) {
  const a = JSON.stringify(actual), e = JSON.stringify(expected);
  if (a !== e) throw new Error(`${what}: expected ${e}, got ${a}`);
}

/** Collects messages of a subscription; `next()` waits for one, `quiet()` asserts none comes. */
class Inbox {
  constructor() {
    this.items = [];
    this.waiters = [];
    this.handler = (message) => {
      const waiter = this.waiters.shift();
      if (waiter) waiter(message);
      else this.items.push(message);
    };
  }
  next(what, ms = 5000) {
    if (this.items.length) return Promise.resolve(this.items.shift());
    let waiter;
    const p = new Promise((resolve) => { waiter = resolve; this.waiters.push(resolve); });
    return withTimeout(p, ms, what).catch((error) => {
      this.waiters = this.waiters.filter((w) => w !== waiter);
      throw error;
    });
  }
  async quiet(what, ms = QUIET) {
    await sleep(ms);
    assert(this.items.length === 0, `${what}: nothing expected, got ${JSON.stringify(this.items.map((m) => m.body))}`);
  }
}

// A WebSocket that counts what arrives (heart-beats are a lone EOL), for the heart-beat check.
class CountingWebSocket extends WebSocket {
  constructor(...args) {
    super(...args);
    this.heartbeatsIn = 0;
    this.addEventListener("message", (event) => {
      const data = event.data;
      const text = typeof data === "string" ? data : new TextDecoder().decode(data);
      if (/^(\r?\n)+$/.test(text)) this.heartbeatsIn += 1;
    });
  }
}

let clients = [];

async function open(options = {}, headers = LOGIN) {
  const trace = [];
  const client = new StarlingClient(WS_URL, {
    connectTimeout: 5000, disconnectTimeout: 3000, receiptTimeout: 5000, heartbeat: [0, 0],
    debug: (line) => trace.push(line), ...options,
  });
  client.trace = trace;
  client.errors = [];
  client.closes = [];
  client.on("error", (error) => client.errors.push(error));
  client.on("close", (info) => client.closes.push(info));
  clients.push(client);
  const frame = await withTimeout(client.connect(headers), 8000, "CONNECTED");
  return { client, frame };
}

function noErrors(client) {
  eq(client.errors.map((e) => e.message), [], "error events");
}

async function closeAll() {
  const all = clients;
  clients = [];
  for (const client of all) {
    if (client.state !== "disconnected") await withTimeout(client.disconnect(), 5000, "disconnect").catch(() => {});
  }
}

// ---------------------------------------------------------------------------------------------

const checks = {
  async connect_and_heartbeat_negotiation() {
    const { client, frame } = await open({ heartbeat: [4000, 6000] });
    eq(frame.command, "CONNECTED", "command");
    eq(frame.headers.version, "1.2", "CONNECTED version");
    eq(client.version, "1.2", "client.version");
    eq(client.state, "connected", "client.state");
    assert(client.connectedFrame === frame, "connectedFrame is the CONNECTED frame");
    assert(/^RabbitMQ/.test(frame.headers.server || ""), `server header names RabbitMQ: ${frame.headers.server}`);
    assert(frame.headers.session, "a session header");
    const server = parseHeartbeat(frame.headers["heart-beat"]);
    assert(server[0] > 0 && server[1] > 0, `the broker offers heart-beats both ways: ${frame.headers["heart-beat"]}`);
    eq(client.heartbeat, negotiateHeartbeat([4000, 6000], server), "negotiated heart-beat");
    eq(client.heartbeat, { outgoing: 4000, incoming: 6000 }, "negotiated heart-beat (the broker accepts ours)");
    // The WebSocket subprotocol (v12.stomp is offered first).
    const protocol = client._ws?.protocol;
    await withTimeout(client.disconnect(), 5000, "disconnect");
    noErrors(client);
    return { "heart-beat": frame.headers["heart-beat"], server: frame.headers.server, protocol };
  },

  async heartbeats_flow_both_ways() {
    // 1 s both ways: the broker must send heart-beats (or the client would declare it dead after 4 s of
    // silence) and the client must send them (or RabbitMQ closes the connection).
    const { client, frame } = await open({ heartbeat: [1000, 1000], WebSocket: CountingWebSocket });
    eq(client.heartbeat, { outgoing: 1000, incoming: 1000 }, "negotiated heart-beat");
    const ws = client._ws;
    await sleep(3500);
    eq(client.state, "connected", "still connected after 3.5 s of idling");
    assert(ws.heartbeatsIn >= 2, `heart-beats received from the broker: ${ws.heartbeatsIn}`);
    const receipt = await withTimeout(client.send(`/topic/${uniq("hb")}`, "alive", { receipt: true }), 3000, "RECEIPT");
    eq(receipt.command, "RECEIPT", "the connection still works");
    eq(client.closes, [], "close events");
    noErrors(client);
    return { "heart-beat": frame.headers["heart-beat"], heartbeatsIn: ws.heartbeatsIn };
  },

  async topic_message_headers_and_utf8_body() {
    const { client } = await open();
    const inbox = new Inbox();
    const sub = client.subscribe("/topic/x", inbox.handler, { receipt: true });
    await withTimeout(sub.receipt, 3000, "SUBSCRIBE receipt");
    const body = "héllo wörld — 日本語, ελληνικά, emoji 🐦🚀, NUL-free";
    const receipt = await withTimeout(client.send("/topic/x", body, { receipt: true, "x-custom": "value 1" }), 3000, "SEND receipt");
    eq(receipt.command, "RECEIPT", "SEND receipt");
    const message = await inbox.next("the MESSAGE");
    eq(message.command, "MESSAGE", "command");
    eq(message.body, body, "UTF-8 body");
    eq(message.headers.destination, "/topic/x", "destination header");
    eq(message.headers.subscription, sub.id, "subscription header");
    assert(message.headers["message-id"], "a message-id header");
    eq(message.headers["content-type"], "text/plain;charset=utf-8", "content-type header");
    eq(message.headers["content-length"], String(utf8Length(body)), "content-length (bytes, not characters)");
    eq(message.headers["x-custom"], "value 1", "a custom header");
    assert(message.subscription === sub, "message.subscription");
    // JSON bodies (content-type application/json) too.
    await withTimeout(client.send("/topic/x", { text: "ünïcödé", n: 42 }, { receipt: true }), 3000, "SEND receipt");
    const json = await inbox.next("the JSON MESSAGE");
    eq(json.headers["content-type"], "application/json", "JSON content-type");
    eq(json.json(), { text: "ünïcödé", n: 42 }, "JSON body");
    await inbox.quiet("no duplicates");
    noErrors(client);
    return { headers: message.headers };
  },

  async header_escaping_round_trip() {
    const { client } = await open();
    const inbox = new Inbox();
    const destination = `/topic/${uniq("esc")}`;
    await withTimeout(client.subscribe(destination, inbox.handler, { receipt: true }).receipt, 3000, "SUBSCRIBE receipt");
    const values = {
      "x-colon": "a:b:c",
      "x-newline": "line 1\nline 2",
      "x-backslash": "C:\\dir\\file",
      "x-mixed": "key: value\nnext:\\n literal",
      "x-utf8": "näïve: ✓",
    };
    const sent = client.trace.length;
    await withTimeout(client.send(destination, "escaped headers", { receipt: true, ...values }), 3000, "SEND receipt");
    const message = await inbox.next("the MESSAGE");
    for (const [name, value] of Object.entries(values)) eq(message.headers[name], value, `header ${name}`);
    noErrors(client);
    return { sentTrace: client.trace.slice(sent, sent + 1) };
  },

  async header_escaping_carriage_return() {
    // STOMP 1.2 adds \r (1.1 has only \n \c \\).
    const { client } = await open();
    const inbox = new Inbox();
    const destination = `/topic/${uniq("cr")}`;
    await withTimeout(client.subscribe(destination, inbox.handler, { receipt: true }).receipt, 3000, "SUBSCRIBE receipt");
    await withTimeout(client.send(destination, "cr", { receipt: true, "x-cr": "a\r\nb" }), 3000, "SEND receipt");
    const message = await inbox.next("the MESSAGE");
    eq(message.headers["x-cr"], "a\r\nb", "header x-cr");
    noErrors(client);
    return {};
  },

  async receipts_are_promises() {
    const { client } = await open();
    const destination = `/topic/${uniq("rcpt")}`;
    const sub = client.subscribe(destination, () => {}, { receipt: "my-subscribe-receipt" });
    const subReceipt = await withTimeout(sub.receipt, 3000, "SUBSCRIBE receipt");
    eq(subReceipt.command, "RECEIPT", "SUBSCRIBE receipt command");
    eq(subReceipt.headers["receipt-id"], "my-subscribe-receipt", "SUBSCRIBE receipt-id (a chosen id)");
    const p1 = client.send(destination, "one", { receipt: true });
    const p2 = client.send(destination, "two", { receipt: "send-2" });
    assert(p1 instanceof Promise && p2 instanceof Promise, "send with a receipt returns a Promise");
    assert(client.send(destination, "three") === undefined, "send without a receipt returns undefined");
    const [r1, r2] = await withTimeout(Promise.all([p1, p2]), 3000, "SEND receipts");
    assert(/^r-\d+$/.test(r1.headers["receipt-id"]), `generated receipt-id: ${r1.headers["receipt-id"]}`);
    eq(r2.headers["receipt-id"], "send-2", "chosen receipt-id");
    const unsub = await withTimeout(sub.unsubscribe({ receipt: true }), 3000, "UNSUBSCRIBE receipt");
    eq(unsub.command, "RECEIPT", "UNSUBSCRIBE receipt");
    eq(client._receipts.size, 0, "no pending receipts");
    noErrors(client);
    return {};
  },

  async unsubscribe_stops_delivery() {
    const { client } = await open();
    const { client: sender } = await open();
    const inbox = new Inbox();
    const destination = `/topic/${uniq("unsub")}`;
    const sub = client.subscribe(destination, inbox.handler, { receipt: true });
    await withTimeout(sub.receipt, 3000, "SUBSCRIBE receipt");
    await withTimeout(sender.send(destination, "before", { receipt: true }), 3000, "SEND receipt");
    eq((await inbox.next("the first MESSAGE")).body, "before", "delivered while subscribed");
    await withTimeout(sub.unsubscribe({ receipt: true }), 3000, "UNSUBSCRIBE receipt");
    assert(!sub.active && client.subscriptions.length === 0, "no longer listed");
    const stray = [];
    client.on("frame", (frame) => stray.push(frame.command));
    await withTimeout(sender.send(destination, "after", { receipt: true }), 3000, "SEND receipt");
    await inbox.quiet("after UNSUBSCRIBE");
    eq(stray, [], "frames for no subscription");
    noErrors(client);
    noErrors(sender);
    return {};
  },

  async queue_client_individual_ack_and_nack() {
    const queue = `/queue/${uniq("q")}`;
    const { client } = await open();
    const inbox = new Inbox();
    const sub = client.subscribe(queue, inbox.handler, { ack: "client-individual", receipt: true });
    await withTimeout(sub.receipt, 3000, "SUBSCRIBE receipt");
    await withTimeout(client.send(queue, "first", { receipt: true }), 3000, "SEND receipt");
    await withTimeout(client.send(queue, "second", { receipt: true }), 3000, "SEND receipt");
    const m1 = await inbox.next("the first MESSAGE");
    const m2 = await inbox.next("the second MESSAGE");
    eq([m1.body, m2.body], ["first", "second"], "queue order");
    for (const m of [m1, m2]) {
      assert(m.headers.ack, `an ack header (STOMP 1.2): ${JSON.stringify(m.headers)}`);
      assert(m.headers.redelivered !== "true", "first delivery is not marked redelivered");
      assert(typeof m.ack === "function" && typeof m.nack === "function", "message.ack/nack");
    }
    const ackTrace = client.trace.length;
    client.ack(m1);
    m2.nack();
    const wire = client.trace.slice(ackTrace).filter((line) => /^>>> (ACK|NACK)/.test(line));
    eq(wire, [`>>> ACK ${JSON.stringify({ id: m1.headers.ack })}`, `>>> NACK ${JSON.stringify({ id: m2.headers.ack })}`], "ACK/NACK frames (id = the ack header)");
    const again = await inbox.next("the NACKed message, redelivered");
    eq(again.body, "second", "redelivered body");
    eq(again.headers.redelivered, "true", "redelivered header");
    again.ack();
    await inbox.quiet("after ACKing everything");
    // Acknowledged messages are gone: a new consumer gets nothing.
    await withTimeout(client.disconnect(), 5000, "disconnect");
    noErrors(client);
    const { client: other } = await open();
    const rest = new Inbox();
    await withTimeout(other.subscribe(queue, rest.handler, { ack: "client-individual", receipt: true }).receipt, 3000, "SUBSCRIBE receipt");
    await rest.quiet("a new consumer of the drained queue");
    noErrors(other);
    return { first: m1.headers, redelivered: again.headers };
  },

  async transaction_abort_and_commit() {
    const { client } = await open();
    const inbox = new Inbox();
    const destination = `/queue/${uniq("tx")}`;
    await withTimeout(client.subscribe(destination, inbox.handler, { receipt: true }).receipt, 3000, "SUBSCRIBE receipt");
    const aborted = client.begin();
    aborted.send(destination, "aborted 1");
    aborted.send(destination, "aborted 2");
    const abortReceipt = await withTimeout(aborted.abort({ receipt: true }), 3000, "ABORT receipt");
    eq(abortReceipt.command, "RECEIPT", "ABORT receipt");
    await inbox.quiet("after ABORT");
    const tx = client.begin("my-tx");
    eq(tx.id, "my-tx", "transaction id");
    tx.send(destination, "committed 1");
    tx.send(destination, "committed 2 — ü");
    await inbox.quiet("inside the transaction, before COMMIT", 400);
    const commitReceipt = await withTimeout(tx.commit({ receipt: true }), 3000, "COMMIT receipt");
    eq(commitReceipt.command, "RECEIPT", "COMMIT receipt");
    const a = await inbox.next("the first committed message");
    const b = await inbox.next("the second committed message");
    eq([a.body, b.body], ["committed 1", "committed 2 — ü"], "committed messages, in order");
    await inbox.quiet("nothing else");
    noErrors(client);
    // (RabbitMQ copies the SEND's `transaction` header into the MESSAGE; harmless, reported.)
    return { deliveredHeaders: a.headers };
  },

  async error_frame_rejects_and_surfaces() {
    const { client } = await open({ receiptTimeout: 2500 });
    const errorEvent = new Promise((resolve) => client.on("error", resolve));
    const started = performance.now();
    const receipt = client.send("/bogus/x", "nowhere", { receipt: true });
    const outcome = receipt.then(
      (frame) => ({ how: "resolved", frame: frame.command }),
      (error) => ({ how: "rejected", error, ms: Math.round(performance.now() - started) }),
    );
    const error = await withTimeout(errorEvent, 3000, "the error event");
    assert(error instanceof StompError, `a StompError: ${error}`);
    eq(error.frame?.command, "ERROR", "error.frame is the ERROR frame");
    const settled = await withTimeout(outcome, 4000, "the receipt promise to settle");
    assert(settled.how === "rejected", `the SEND receipt promise must not resolve: ${JSON.stringify(settled)}`);
    await sleep(300);
    const details = {
      errorMessage: error.message,
      errorHeaders: error.frame.headers,
      errorBody: error.frame.body,
      receiptRejectedBy: settled.error === error ? "the ERROR frame (receipt-id matched)" : settled.error.message,
      rejectedAfterMs: settled.ms,
      stateAfter: client.state, // RabbitMQ keeps the connection open after this ERROR
      closedByBroker: client.closes.length > 0,
    };
    // RabbitMQ reports the problem in the ERROR frame (without a receipt-id, so starling.js can only reject
    // the receipt promise by `receiptTimeout` or when the connection ends).
    assert(/destination/i.test(error.message + error.frame.body), `the ERROR names the destination problem: ${error.message}`);
    return details;
  },

  async bad_login_rejects_connect() {
    const client = new StarlingClient(WS_URL, { connectTimeout: 5000, heartbeat: [0, 0], reconnect: { initialDelay: 200, maxAttempts: 3 } });
    clients.push(client);
    const errors = [];
    client.on("error", (e) => errors.push(e));
    let rejected;
    try {
      await withTimeout(client.connect({ login: "guest", passcode: "wrong", host: "/" }), 8000, "connect to settle");
    } catch (error) {
      rejected = error;
    }
    assert(rejected instanceof StompError, `connect() rejects with a StompError: ${rejected}`);
    eq(rejected.frame?.command, "ERROR", "rejected with the ERROR frame");
    await sleep(500);
    eq(client.state, "disconnected", "no reconnect after an ERROR reply to CONNECT");
    return { message: rejected.message };
  },

  async default_host_header() {
    // Without a `host` header starling.js sends the URL's host name (as STOMP 1.2 recommends); RabbitMQ takes
    // `host` as the virtual host name. Reported, not asserted: resolves with what happened.
    const client = new StarlingClient(WS_URL, { connectTimeout: 5000, heartbeat: [0, 0] });
    clients.push(client);
    const trace = [];
    client.options.debug = (line) => trace.push(line);
    try {
      const frame = await withTimeout(client.connect({ login: "guest", passcode: "guest" }), 8000, "connect to settle");
      return { connected: true, version: frame.headers.version, connect: trace.find((l) => l.startsWith(">>> CONNECT")) };
    } catch (error) {
      return { connected: false, error: error.message, body: error.frame?.body, connect: trace.find((l) => l.startsWith(">>> CONNECT")) };
    }
  },

  async disconnect_with_receipt() {
    // STOMP 1.2: the client asks for a RECEIPT to DISCONNECT and closes once it has it. RabbitMQ (3.10 at
    // least) closes the WebSocket at DISCONNECT without sending the RECEIPT: disconnect() must then resolve on
    // the close, at once, not after `disconnectTimeout`. Whether the RECEIPT came is reported.
    const { client } = await open({ disconnectTimeout: 5000 });
    const closed = new Promise((resolve) => client.on("close", resolve));
    const started = performance.now();
    await withTimeout(client.disconnect(), 6000, "disconnect()");
    const ms = performance.now() - started;
    const out = client.trace.find((line) => line.startsWith(">>> DISCONNECT"));
    assert(out, "a DISCONNECT frame was sent");
    const id = JSON.parse(out.slice(">>> DISCONNECT ".length)).receipt;
    assert(id, "DISCONNECT asks for a receipt");
    const receipt = client.trace.some((line) => line.startsWith("<<< RECEIPT") && line.includes(JSON.stringify(id)));
    assert(ms < 2500, `disconnect() resolved on the RECEIPT or the broker's close (${Math.round(ms)} ms), not the 5 s timeout`);
    eq(client.state, "disconnected", "state");
    const close = await withTimeout(closed, 1000, "the close event");
    eq(close.willReconnect, false, "close.willReconnect");
    assert(client._receipts.size === 0, "no pending receipts");
    noErrors(client);
    return { receiptForDisconnect: receipt, ms: Math.round(ms), close, trace: client.trace.slice(-3) };
  },
};

window.checkNames = Object.keys(checks);
window.runCheck = async (name) => {
  try {
    if (!checks[name]) throw new Error(`no such check: ${name}`);
    const details = await checks[name]();
    return { ok: true, details: details ?? {} };
  } catch (error) {
    return { ok: false, error: String(error?.stack || error) };
  } finally {
    await closeAll();
  }
};
document.body.dataset.ready = "1";
