// The live price board: a wildcard topic subscription (default /topic/prices.*) with last values (docs/ticker.md),
// built on starling.js. Every symbol gets a row: last price, change since the first price seen (absolute and %),
// a green/red flash on up/down ticks, a sparkline of the last prices and an update count.
//
// URL parameters: ?topic=/topic/prices.* (the destination to subscribe to, wildcards allowed),
// ?symbols=AAPL,MSFT (show only these; matched case-insensitively), ?rate=1 (the initial x-max-rate, one of the
// slider's steps; "max" or 0 = no cap).
//
// Hundreds of symbols at hundreds of updates per second: a message only stores the symbol's newest price (and appends
// it to the symbol's sparkline buffer) and marks the row dirty. In an animation frame, at most RENDER_FPS times a
// second, the dirty rows are written (text and class changes only, never a layout read) and their sparklines (SVG
// polylines) redrawn, only for rows on screen (an IntersectionObserver says which). New rows are inserted in symbol
// order in the same pass. The board is a grid of fixed-height rows, each a layout and paint boundary, and rows off
// screen are not rendered at all (ticker.css: contain, content-visibility).
//
// The rate slider sets the SUBSCRIBE header `x-max-rate:<n>` (at most n messages per second per symbol; the server
// conflates the rest, so the newest price always arrives): changing it unsubscribes and subscribes again with the
// new header; the new subscription first gets every symbol's current price (`x-snapshot:true`).
//
// For tests and debugging: `window.tickerStats` (plain counters, see `stats` below) and `window.ticker` (the client,
// the rows, `counts()`, `prices()`, `setRate(n)`, `resetFrameGap()`).
import { StarlingClient } from "./starling.js";

const RATES = [0.5, 1, 2, 5, 10, 20, 50, 0]; // slider steps, updates/s per symbol; 0 = no cap ("max")
const SPARK_POINTS = 60; // prices kept per symbol for the sparkline
const SPARK_WIDTH = 120; // CSS pixels (ticker.css sizes the SVG the same)
const SPARK_HEIGHT = 26;
const FLASH_HOLD_MS = 300; // a tick colours the price this long
const RENDER_FPS = 20; // board updates per second at most (animation frames come more often)
const RATE_WINDOW_MS = 2000; // the updates/s figure is an average over this window
const RESUBSCRIBE_DELAY_MS = 250; // moving the slider re-subscribes once it rests this long

const SVG = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const topic = params.get("topic") || "/topic/prices.*";
const symbolFilter = parseList(params.get("symbols"));
const serverURL = `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}/ws`;

/** Counters for tests and the stats bar; updated in place. */
const stats = {
  state: "idle", // the client's state
  connects: 0, // CONNECTED frames (the first connection and every reconnect)
  messages: 0, // MESSAGE frames received for the current or earlier subscriptions
  live: 0, // of which live updates
  snapshots: 0, // of which last values (x-snapshot:true)
  ignored: 0, // messages without a symbol we could tell
  filtered: 0, // messages for symbols not in ?symbols
  symbols: 0, // rows on the board
  rate: 0, // messages per second, averaged over RATE_WINDOW_MS
  maxRate: 0, // the x-max-rate of the current subscription (0 = none)
  subscriptions: 0, // SUBSCRIBEs made by the page (the first, then one per rate change)
  subscribed: false, // the current subscription's RECEIPT arrived (its snapshot is complete)
  subscriptionSnapshots: 0, // snapshot messages since the current subscription was made (or the connection restored)
  subscriptionLive: 0, // live messages since then
  frames: 0, // animation frames (the page asks for every one; the board is redrawn in at most RENDER_FPS of them)
  renders: 0, // board redraws
  maxFrameGap: 0, // longest time between two animation frames since resetFrameGap(), ms
  rendered: 0, // row renders
  sparklines: 0, // sparkline draws
  errors: 0,
  lastError: "",
};

const rows = new Map(); // symbol -> Row
const order = []; // rows in symbol order, as in the table
const dirty = new Set(); // rows changed since the last frame
const flashing = new Set(); // rows showing a tick colour
const fresh = []; // rows created since the last frame, not yet in the table
let client = null;
let sub = null;
let rateTimer = null;
const rateSamples = []; // [time, messages]

const collator = new Intl.Collator(undefined, { numeric: true });
const priceFormat = new Intl.NumberFormat(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
const smallPriceFormat = new Intl.NumberFormat(undefined, { minimumFractionDigits: 4, maximumFractionDigits: 4 });
const changeFormat = new Intl.NumberFormat(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2, signDisplay: "exceptZero" });
const percentFormat = new Intl.NumberFormat(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2, signDisplay: "exceptZero" });

function parseList(text) {
  if (!text) return null;
  const names = text.split(",").map((s) => s.trim().toUpperCase()).filter(Boolean);
  return names.length ? new Set(names) : null;
}

// ---- one row per symbol

class Row {
  constructor(symbol) {
    this.symbol = symbol;
    this.first = null; // first price seen
    this.price = null; // newest price
    this.ticks = 0; // live updates received
    this.direction = 0; // of the newest price change: 1, -1 (0 = none yet)
    this.flash = 0; // tick to show at the next render: 1 up, -1 down
    this.flashUntil = 0;
    this.history = new Float64Array(SPARK_POINTS); // ring buffer of prices
    this.start = 0;
    this.length = 0;
    this.visible = true; // on screen (until the IntersectionObserver says otherwise)
    this.sparkDirty = true;
    this.shown = {}; // what the cells show now, to skip writes that change nothing
    this.build();
  }

  build() {
    const row = document.createElement("div");
    row.className = "row";
    row.setAttribute("role", "row");
    row.dataset.symbol = this.symbol;
    const cell = (className, role = "cell") => {
      const span = document.createElement("span");
      span.className = className;
      span.setAttribute("role", role);
      row.append(span);
      return span;
    };
    cell("symbol", "rowheader").textContent = this.symbol;
    this.priceCell = cell("num price");
    this.changeCell = cell("num change");
    this.pctCell = cell("num pct");
    const trend = cell("trend");
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("class", "spark");
    svg.setAttribute("viewBox", `0 0 ${SPARK_WIDTH} ${SPARK_HEIGHT}`);
    svg.setAttribute("aria-hidden", "true");
    this.line = document.createElementNS(SVG, "polyline");
    this.dot = document.createElementNS(SVG, "circle");
    this.dot.setAttribute("r", "1.8");
    svg.append(this.line, this.dot);
    trend.append(svg);
    this.ticksCell = cell("num ticks");
    this.el = row;
  }

  /** Takes a price; returns false when it adds nothing (a snapshot repeating the price shown). */
  update(price, snapshot) {
    if (snapshot && price === this.price) return false;
    if (this.first === null) this.first = price;
    if (this.price !== null && price !== this.price) {
      this.direction = price > this.price ? 1 : -1;
      this.flash = this.direction;
    }
    this.price = price;
    const end = (this.start + this.length) % SPARK_POINTS;
    this.history[end] = price;
    if (this.length < SPARK_POINTS) this.length += 1;
    else this.start = (this.start + 1) % SPARK_POINTS;
    this.sparkDirty = true;
    return true;
  }

  render(now) {
    stats.rendered += 1;
    if (this.price !== null) {
      this.set("price", this.priceCell, (Math.abs(this.price) < 1 ? smallPriceFormat : priceFormat).format(this.price));
      const change = this.price - this.first;
      const sign = change > 0 ? "up" : change < 0 ? "down" : "flat";
      this.set("change", this.changeCell, changeFormat.format(change));
      this.set("pct", this.pctCell, this.first ? `${percentFormat.format((change / this.first) * 100)} %` : "–");
      if (this.shown.sign !== sign) {
        this.shown.sign = sign;
        this.changeCell.className = `num change ${sign}`;
        this.pctCell.className = `num pct ${sign}`;
      }
    }
    this.set("ticks", this.ticksCell, String(this.ticks));
    if (this.flash) {
      const name = this.flash > 0 ? "flash-up" : "flash-down";
      if (this.shown.flash !== name) {
        if (this.shown.flash) this.el.classList.remove(this.shown.flash);
        this.el.classList.add(name);
        this.shown.flash = name;
      }
      this.flashUntil = now + FLASH_HOLD_MS;
      this.flash = 0;
      flashing.add(this);
    }
    if (this.sparkDirty && this.visible) this.drawSparkline();
  }

  set(key, cell, text) {
    if (this.shown[key] === text) return;
    this.shown[key] = text;
    cell.textContent = text;
  }

  endFlash() {
    if (this.shown.flash) this.el.classList.remove(this.shown.flash);
    this.shown.flash = null;
  }

  // An SVG polyline (no canvas: hundreds of canvases cost a compositing layer each).
  drawSparkline() {
    this.sparkDirty = false;
    stats.sparklines += 1;
    const { length, start, history } = this;
    if (length === 0) return;
    let min = Infinity, max = -Infinity;
    for (let i = 0; i < length; i++) {
      const p = history[(start + i) % SPARK_POINTS];
      if (p < min) min = p;
      if (p > max) max = p;
    }
    const pad = 3;
    const range = max - min;
    const step = (SPARK_WIDTH - 2 * pad) / (SPARK_POINTS - 1);
    const x0 = SPARK_WIDTH - pad - (length - 1) * step; // the newest price at the right edge
    const y = (p) => (range > 0 ? SPARK_HEIGHT - pad - ((p - min) / range) * (SPARK_HEIGHT - 2 * pad) : SPARK_HEIGHT / 2);
    let points = "";
    for (let i = 0; i < length; i++) points += `${(x0 + i * step).toFixed(1)},${y(history[(start + i) % SPARK_POINTS]).toFixed(1)} `;
    this.line.setAttribute("points", points);
    const firstPrice = history[start];
    const lastPrice = history[(start + length - 1) % SPARK_POINTS];
    this.dot.setAttribute("cx", (x0 + (length - 1) * step).toFixed(1));
    this.dot.setAttribute("cy", y(lastPrice).toFixed(1));
    const trend = lastPrice > firstPrice ? "up" : lastPrice < firstPrice ? "down" : "flat";
    if (this.shown.trend !== trend) {
      this.shown.trend = trend;
      this.line.parentNode.setAttribute("class", `spark ${trend}`);
    }
  }
}

// Off-screen rows keep their sparkline dirty until they scroll into view.
const visibility = "IntersectionObserver" in window
  ? new IntersectionObserver((entries) => {
    for (const entry of entries) {
      const row = entry.target.__tickerRow;
      if (!row) continue;
      row.visible = entry.isIntersecting;
      if (row.visible && row.sparkDirty) dirty.add(row);
    }
  }, { rootMargin: "200px 0px" })
  : null;

// ---- messages in

function symbolOf(data, headers) {
  if (data && typeof data.symbol === "string" && data.symbol) return data.symbol;
  if (headers["x-key"]) return headers["x-key"];
  const destination = headers.destination || "";
  const last = destination.slice(Math.max(destination.lastIndexOf("."), destination.lastIndexOf("/")) + 1);
  return last || null;
}

function priceOf(data) {
  const raw = typeof data === "object" && data !== null ? data.price ?? data.last ?? data.p : data;
  const price = typeof raw === "string" ? Number(raw) : raw;
  return typeof price === "number" && Number.isFinite(price) ? price : null;
}

function onMessage(message) {
  const snapshot = message.headers["x-snapshot"] === "true";
  stats.messages += 1;
  if (snapshot) {
    stats.snapshots += 1;
    stats.subscriptionSnapshots += 1;
  } else {
    stats.live += 1;
    stats.subscriptionLive += 1;
  }
  let data = null;
  try {
    data = message.body ? JSON.parse(message.body) : null;
  } catch {
    data = message.body; // not JSON: maybe a bare price
  }
  const symbol = symbolOf(data, message.headers);
  if (!symbol) {
    stats.ignored += 1;
    return;
  }
  if (symbolFilter && !symbolFilter.has(symbol.toUpperCase())) {
    stats.filtered += 1;
    return;
  }
  let row = rows.get(symbol);
  if (!row) {
    row = new Row(symbol);
    rows.set(symbol, row);
    fresh.push(row);
  }
  if (!snapshot) row.ticks += 1;
  const price = priceOf(data);
  if (price !== null) row.update(price, snapshot);
  dirty.add(row);
}

// ---- rendering, once per animation frame

let lastFrame = 0;
let lastRender = -Infinity;

function frame(now) {
  stats.frames += 1;
  if (lastFrame) stats.maxFrameGap = Math.max(stats.maxFrameGap, now - lastFrame);
  lastFrame = now;
  requestAnimationFrame(frame);
  // Painting costs per frame whatever changed: the board is drawn at most RENDER_FPS times a second, each time with
  // every row that changed since.
  if (now - lastRender < 1000 / RENDER_FPS - 4) return;
  lastRender = now;
  stats.renders += 1;
  if (fresh.length) insertRows();
  for (const row of dirty) row.render(now);
  dirty.clear();
  for (const row of flashing) {
    if (now >= row.flashUntil) {
      row.endFlash();
      flashing.delete(row);
    }
  }
}

function insertRows() {
  fresh.sort((a, b) => collator.compare(a.symbol, b.symbol));
  const body = $("rows");
  const appendOnly = order.length === 0 || collator.compare(fresh[0].symbol, order[order.length - 1].symbol) > 0;
  order.push(...fresh);
  if (!appendOnly) order.sort((a, b) => collator.compare(a.symbol, b.symbol));
  const fragment = document.createDocumentFragment();
  for (const row of appendOnly ? fresh : order) fragment.append(row.el); // moving the existing rows re-orders them
  body.append(fragment);
  for (const row of fresh) {
    if (visibility) {
      row.el.__tickerRow = row;
      visibility.observe(row.el);
    }
  }
  fresh.length = 0;
  stats.symbols = rows.size;
  $("stat-symbols").textContent = String(rows.size);
  $("empty").hidden = true;
}

// The stats bar: a few times a second is plenty.
function tickStats() {
  const now = performance.now();
  rateSamples.push([now, stats.messages]);
  while (rateSamples.length > 2 && now - rateSamples[0][0] > RATE_WINDOW_MS) rateSamples.shift();
  const [t0, n0] = rateSamples[0];
  stats.rate = now > t0 ? Math.round(((stats.messages - n0) * 1000) / (now - t0)) : 0;
  $("stat-rate").textContent = String(stats.rate);
  $("stat-total").textContent = String(stats.messages);
}

// ---- the connection and the subscription

function rateIndex(value) {
  if (value === null || value === "" || value === "max") return RATES.length - 1;
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) return RATES.length - 1;
  let best = 0;
  for (let i = 0; i < RATES.length - 1; i++) {
    if (Math.abs(RATES[i] - n) < Math.abs(RATES[best] - n)) best = i;
  }
  return best;
}

const rateLabel = (rate) => (rate > 0 ? `${rate}/s` : "max");
const currentRate = () => RATES[Number($("rate").value)] ?? 0;

function showRate() {
  const rate = currentRate();
  $("rate-value").textContent = rateLabel(rate);
  $("rate").setAttribute("aria-valuetext", rate > 0 ? `${rate} updates per second` : "no limit");
}

function subscribe() {
  clearTimeout(rateTimer);
  rateTimer = null;
  const rate = currentRate();
  if (sub) {
    try {
      sub.unsubscribe();
    } catch { /* not connected: it is simply forgotten */ }
    sub = null;
  }
  const headers = { receipt: true };
  if (rate > 0) headers["x-max-rate"] = String(rate);
  stats.maxRate = rate;
  stats.subscriptions += 1;
  stats.subscribed = false;
  stats.subscriptionSnapshots = 0;
  stats.subscriptionLive = 0;
  const id = `ticker-${stats.subscriptions}`;
  let mine;
  try {
    mine = client.subscribe(topic, onMessage, { id, ...headers });
  } catch (error) {
    // The socket closed under a connected client: the subscription is kept and sent again on reconnect.
    mine = client.subscriptions.find((s) => s.id === id);
    if (!mine) throw error;
  }
  sub = mine;
  mine.receipt?.then(
    () => {
      if (sub === mine) stats.subscribed = true;
    },
    () => {}, // the connection dropped first: it is subscribed again on reconnect
  );
}

function onRateInput(immediate) {
  showRate();
  const url = new URL(location.href);
  const rate = currentRate();
  if (rate > 0) url.searchParams.set("rate", String(rate));
  else url.searchParams.delete("rate");
  history.replaceState(null, "", url);
  clearTimeout(rateTimer);
  rateTimer = null;
  if (rate === stats.maxRate) return; // back where it was: nothing to change
  rateTimer = setTimeout(subscribe, immediate ? 0 : RESUBSCRIBE_DELAY_MS);
}

function onState(state) {
  const labels = { connected: "connected", connecting: "connecting…", reconnecting: "reconnecting…", disconnecting: "disconnecting…", disconnected: "disconnected" };
  stats.state = state;
  $("status").textContent = labels[state] || state;
  $("status").className = `status ${state}`;
  document.body.dataset.connection = state;
}

function showError(text) {
  $("error").textContent = text;
  $("error").hidden = !text;
}

function start() {
  $("topic").textContent = topic + (symbolFilter ? ` (${[...symbolFilter].join(", ")})` : "");
  $("rate").value = String(rateIndex(params.get("rate")));
  showRate();
  // Dragging or pressing arrow keys fires many events: re-subscribe once the slider rests.
  $("rate").addEventListener("input", () => onRateInput(false));
  $("rate").addEventListener("change", () => onRateInput(false));

  client = new StarlingClient(serverURL, { reconnect: { initialDelay: 500, maxDelay: 10000 } });
  client.on("state", onState);
  client.on("connect", (_frame, { reconnected }) => {
    stats.connects += 1;
    showError("");
    if (reconnected) {
      // The client sent our SUBSCRIBE again: a fresh snapshot follows (there is no RECEIPT to wait for).
      stats.subscriptionSnapshots = 0;
      stats.subscriptionLive = 0;
      stats.subscribed = true;
    }
  });
  client.on("error", (error) => {
    stats.errors += 1;
    stats.lastError = error.message;
    showError(`Error: ${error.message}`);
    // A server that refuses the rate cap would refuse it again after every reconnect: drop the cap.
    if (/x-max-rate/i.test(error.message) && stats.maxRate > 0) {
      $("rate").value = String(RATES.length - 1);
      showRate();
      subscribe();
    }
  });
  onState(client.state);
  subscribe(); // sent once connected
  client.connect({}).catch((error) => showError(`Cannot connect: ${error.message}`));

  requestAnimationFrame(frame);
  setInterval(tickStats, 500);
}

window.tickerStats = stats;
window.ticker = {
  get client() { return client; },
  rows,
  topic,
  /** symbol -> live updates received */
  counts: () => Object.fromEntries([...rows].map(([symbol, row]) => [symbol, row.ticks])),
  /** symbol -> newest price */
  prices: () => Object.fromEntries([...rows].map(([symbol, row]) => [symbol, row.price])),
  /** Sets the slider to the step nearest `rate` (0 = max) and re-subscribes at once. */
  setRate(rate) {
    $("rate").value = String(rateIndex(rate > 0 ? rate : "max"));
    onRateInput(true);
  },
  resetFrameGap() {
    stats.maxFrameGap = 0;
    lastFrame = 0;
  },
};

start();
