// The admin page (served at /admin): live rates from /metrics and the admin API of docs/admin-api.md.
//
// * The token: asked once (a password field), kept in sessionStorage (this tab only), sent as
//   `Authorization: Bearer` on every /api/v1/ request. A 401 forgets it and asks again, saying why; a
//   404 {"error":"disabled"} shows how to turn the API on (the live rates still work: /metrics needs no token).
// * Live: /metrics every 2 s, parsed here (Prometheus text format). Rates are counter deltas between two scrapes
//   (a counter that went down means the server restarted: that interval has no rate); the delivery latency p50/p99
//   is estimated from the histogram buckets' deltas over the interval, like Prometheus' histogram_quantile. The last
//   5 minutes are kept (a bounded array) and drawn as small SVG line charts.
// * Tables from the API every 2 s: connections (at most 200, fetched with ?limit=, with a "N more" note) with
//   Disconnect; queues with Purge and, for dead-letter queues (`.dlq`), Redrive; rooms (a click shows who is
//   present); subscribed destinations. Rows are keyed and reused: a refresh only changes the text that changed,
//   and no table shows more than 200 rows.
// * Publish: destination, body and key=value header lines, POST /api/v1/publish; the answer or the refusal shows.
//
// Every API error ({"error","reason"}) is shown next to what caused it. Nothing from the server goes through
// innerHTML: text is set with textContent, attributes with setAttribute.
//
// For tests and debugging: `window.adminDebug` (mode, scrapes, samples, the latest sample, the errors shown).

const TOKEN_KEY = "starling.admin.token";
const METRICS_INTERVAL_MS = 2000;
const TABLES_INTERVAL_MS = 2000;
const CHART_WINDOW_MS = 5 * 60 * 1000; // charts show the last 5 minutes
const CHART_MIN_SPAN_MS = 60 * 1000; // ... or at least the last minute, while the history is shorter
const MAX_SAMPLES = Math.ceil(CHART_WINDOW_MS / METRICS_INTERVAL_MS) + 10; // hard cap of the history array
const MAX_ROWS = 200; // rows per table at most
const NOTICE_MS = 10000; // an action's result stays this long
const PROBE_PATH = "/api/v1/connections?limit=1";
const SVG = "http://www.w3.org/2000/svg";
const CHART_W = 300; // SVG user units (the SVG is stretched to its box; strokes do not scale)
const CHART_H = 80;

// ---- errors of the page itself (for the test, and so that they are visible in the console)

const jsErrors = [];
window.addEventListener("error", (event) => {
  jsErrors.push(String(event.message || event.error));
  if (jsErrors.length > 50) jsErrors.shift();
});
window.addEventListener("unhandledrejection", (event) => {
  jsErrors.push(`unhandled rejection: ${event.reason?.message ?? event.reason}`);
  if (jsErrors.length > 50) jsErrors.shift();
});

const $ = (id) => document.getElementById(id);
const intFormat = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
const oneDecimal = new Intl.NumberFormat("en-US", { maximumFractionDigits: 1 });
const twoDecimals = new Intl.NumberFormat("en-US", { maximumFractionDigits: 2 });

// ================================================================================================ state

let token = null; // the token in use (null: none)
let mode = "starting"; // "starting" | "login" | "disabled" | "dashboard"
let serverDown = false; // the last request could not reach the server
const shownErrors = []; // every error message put on the page (last 50), for tests
const history = []; // samples, oldest first (bounded: MAX_SAMPLES, CHART_WINDOW_MS)
let previous = null; // the previous scrape: { t, counters, buckets }
let scrapes = 0;
let tableRefreshes = 0; // completed refreshes of all the tables
let metricsTimer = null;
let tablesTimer = null;
let tablesGeneration = 0;
let openRoom = null; // the room whose presence list is shown: { name, destination }
const sequence = { connections: 0, queues: 0, rooms: 0, destinations: 0, presence: 0 };

window.adminDebug = {
  get mode() { return mode; },
  get scrapes() { return scrapes; },
  get samples() { return history.length; },
  get tableRefreshes() { return tableRefreshes; },
  get last() { return history.length ? { ...history[history.length - 1] } : null; },
  get shownErrors() { return shownErrors.slice(); },
  get jsErrors() { return jsErrors.slice(); },
};

// ================================================================================================ the API

class ApiError extends Error {
  constructor(status, code, reason) {
    super(reason);
    this.status = status; // 0: no answer
    this.code = code;
    this.reason = reason;
    this.handled = false; // true when the page already reacted (the token prompt, the "disabled" panel)
  }
}

/** A request to the admin API; resolves to the JSON answer, rejects with an ApiError. A 401 forgets the token and
 *  asks again (unless `quiet`); a 404 "disabled" shows the panel that says how to turn the API on. */
async function api(method, path, body, { quiet = false } = {}) {
  const headers = { Accept: "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  const init = { method, headers, cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response, text;
  try {
    response = await fetch(path, init);
    text = await response.text();
  } catch (error) {
    setServerDown(`Cannot reach the server: ${error.message}`);
    throw new ApiError(0, "unreachable", `the server did not answer (${error.message})`);
  }
  setServerDown(null);
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    const code = typeof data?.error === "string" ? data.error : `http_${response.status}`;
    const reason = typeof data?.reason === "string" ? data.reason : (text || response.statusText).slice(0, 300);
    const error = new ApiError(response.status, code, reason);
    if (response.status === 404 && code === "disabled") {
      error.handled = true;
      showDisabled(error);
    } else if (response.status === 401 && !quiet) {
      error.handled = true;
      forgetToken();
      showLogin(`The server refused the token (HTTP 401 ${code}): ${reason}. Enter the token again.`);
    }
    throw error;
  }
  if (data === null || typeof data !== "object") throw new ApiError(response.status, "bad_response", "the answer was not a JSON object");
  return data;
}

function describe(error) {
  if (error instanceof ApiError) return error.status ? `${error.reason} (HTTP ${error.status} ${error.code})` : error.reason;
  return String(error?.message ?? error);
}

const enc = encodeURIComponent;

// ================================================================================================ modes, token

function setMode(next) {
  mode = next;
  document.body.dataset.mode = next;
  $("login").hidden = next !== "login";
  $("disabled").hidden = next !== "disabled";
  $("main").hidden = !(next === "dashboard" || next === "disabled");
  $("tables").hidden = next !== "dashboard";
  $("sign-out").hidden = next !== "dashboard";
  if (next === "dashboard") startTables();
  else stopTables();
  updateStatus();
}

function updateStatus() {
  const [text, state] = serverDown ? ["server unreachable", "disconnected"]
    : mode === "dashboard" ? ["live", "connected"]
    : mode === "disabled" ? ["admin API off", "reconnecting"]
    : mode === "login" ? ["token needed", "idle"]
    : ["starting…", "idle"];
  const status = $("status");
  if (status.textContent !== text) status.textContent = text;
  status.className = `status ${state}`;
}

function setServerDown(message) {
  const down = message !== null;
  if (down === serverDown && !down) return;
  serverDown = down;
  showText($("global-error"), message, true);
  updateStatus();
}

function showLogin(message) {
  setMode("login");
  showText($("login-error"), message || null, true);
  const input = $("token");
  input.value = "";
  input.focus();
}

function showDisabled(error) {
  forgetToken();
  $("disabled-reason").textContent = `The server said: ${error.reason}`;
  setMode("disabled");
}

function forgetToken() {
  token = null;
  sessionStorage.removeItem(TOKEN_KEY);
}

/** Tries a token with one request; keeps it (and shows the dashboard) when the server accepts it. A stored token
 *  is kept while the server cannot be reached (tried again every few seconds). */
async function signIn(candidate, { stored = false } = {}) {
  token = candidate;
  try {
    await api("GET", PROBE_PATH, undefined, { quiet: true });
  } catch (error) {
    if (error.handled) return false; // the API is off: that panel shows
    token = null;
    if (error.status === 0 && stored) {
      showLogin(`Cannot check the saved token: ${describe(error)}. Trying again…`);
      setTimeout(() => {
        if (mode === "login" && sessionStorage.getItem(TOKEN_KEY) === candidate) signIn(candidate, { stored: true });
      }, 3000);
      return false;
    }
    forgetToken();
    if (error.status === 401) showLogin(`The server refused this token (HTTP 401 ${error.code}): ${error.reason}`);
    else showLogin(`Cannot check the token: ${describe(error)}`);
    return false;
  }
  sessionStorage.setItem(TOKEN_KEY, candidate);
  showText($("login-error"), null);
  setMode("dashboard");
  return true;
}

/** Without a token: asks the API whether it is on (401) or off (404 disabled). */
async function probe() {
  token = null;
  try {
    await api("GET", PROBE_PATH, undefined, { quiet: true });
    setMode("dashboard"); // an API without a token cannot happen, but then there is nothing to ask
  } catch (error) {
    if (error.handled) return;
    if (error.status === 401) showLogin(null);
    else showLogin(`Cannot reach the admin API: ${describe(error)}`);
  }
}

// ================================================================================================ small DOM helpers

/** Shows `text` in `el` (hides it for null). Error elements also record what they showed. */
function showText(el, text, isError = el.classList.contains("error")) {
  if (text === null || text === undefined || text === "") {
    if (!el.hidden) el.hidden = true;
    if (el.textContent) el.textContent = "";
    return;
  }
  if (el.textContent !== text) el.textContent = text;
  el.hidden = false;
  if (isError) {
    shownErrors.push(text);
    if (shownErrors.length > 50) shownErrors.shift();
  }
}

const noticeTimers = new Map();
function showNotice(el, text) {
  showText(el, text, false);
  clearTimeout(noticeTimers.get(el));
  noticeTimers.set(el, setTimeout(() => showText(el, null, false), NOTICE_MS));
}

function make(tag, className, text) {
  const el = document.createElement(tag);
  if (className) el.className = className;
  if (text !== undefined) el.textContent = text;
  return el;
}

/** A confirmation in a modal <dialog>; resolves to true for OK. */
function confirmAction(text, okLabel) {
  const dialog = $("confirm");
  if (dialog.open) return Promise.resolve(false);
  $("confirm-text").textContent = text;
  $("confirm-ok").textContent = okLabel;
  dialog.returnValue = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.showModal();
    $("confirm-cancel").focus();
  });
}

// ================================================================================================ numbers

function fmtRate(v) {
  if (v === null || v === undefined || !Number.isFinite(v)) return "–";
  if (v === 0) return "0";
  if (v < 10) return twoDecimals.format(v);
  if (v < 100) return oneDecimal.format(v);
  return intFormat.format(v);
}

function fmtInt(v) {
  return v === null || v === undefined || !Number.isFinite(v) ? "–" : intFormat.format(v);
}

function fmtBytes(v) {
  if (v === null || v === undefined || !Number.isFinite(v)) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return `${i === 0 ? intFormat.format(v) : oneDecimal.format(v)} ${units[i]}`;
}

const fmtBytesRate = (v) => (v === null || v === undefined ? "–" : `${fmtBytes(v)}/s`);

function fmtSeconds(v) {
  if (v === null || v === undefined || !Number.isFinite(v)) return "–";
  if (v === 0) return "0";
  if (v < 0.001) return `${intFormat.format(v * 1e6)} µs`;
  if (v < 1) return `${v < 0.01 ? twoDecimals.format(v * 1000) : oneDecimal.format(v * 1000)} ms`;
  return `${twoDecimals.format(v)} s`;
}

/** The top of a byte chart: a 1-2-5 step of the unit fmtBytes will show it in (so "50 KiB/s", not "48.8 KiB/s"). */
function niceBytes(v) {
  let unit = 1;
  while (v >= unit * 1024 && unit < 1024 ** 4) unit *= 1024;
  return Math.min(niceCeil(v / unit), 1024) * unit; // 1024 units: 1 of the next
}

/** The smallest 1, 2 or 5 times a power of ten at or above v (the top of a chart). */
function niceCeil(v) {
  if (!(v > 0)) return 1;
  const exp = Math.floor(Math.log10(v));
  const base = 10 ** exp;
  for (const m of [1, 2, 5, 10]) if (m * base >= v * 0.9999) return m * base;
  return 10 * base;
}

// ================================================================================================ /metrics

/** Parses the Prometheus text format into Map(name -> [{ labels, value }]). */
function parseMetrics(text) {
  const metrics = new Map();
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line || line[0] === "#") continue;
    let i = 0;
    while (i < line.length && line[i] !== "{" && line[i] !== " " && line[i] !== "\t") i += 1;
    const name = line.slice(0, i);
    const labels = {};
    if (line[i] === "{") {
      i += 1;
      for (;;) {
        while (line[i] === " " || line[i] === ",") i += 1;
        if (i >= line.length) break;
        if (line[i] === "}") {
          i += 1;
          break;
        }
        const eq = line.indexOf("=", i);
        if (eq < 0 || line[eq + 1] !== '"') break;
        const key = line.slice(i, eq).trim();
        let value = "";
        let j = eq + 2;
        for (; j < line.length && line[j] !== '"'; j += 1) {
          if (line[j] === "\\" && j + 1 < line.length) {
            j += 1;
            value += line[j] === "n" ? "\n" : line[j];
          } else {
            value += line[j];
          }
        }
        labels[key] = value;
        i = j + 1;
      }
    }
    const rest = line.slice(i).trim().split(/\s+/);
    const value = parseValue(rest[0]);
    if (!name || value === null) continue;
    let list = metrics.get(name);
    if (!list) metrics.set(name, (list = []));
    list.push({ labels, value });
  }
  return metrics;
}

function parseValue(text) {
  if (text === undefined) return null;
  if (text === "+Inf") return Infinity;
  if (text === "-Inf") return -Infinity;
  if (text === "NaN") return NaN;
  const v = Number(text);
  return Number.isNaN(v) ? null : v;
}

function sum(metrics, name, where = () => true) {
  let total = 0;
  let found = false;
  for (const s of metrics.get(name) || []) {
    if (where(s.labels) && Number.isFinite(s.value)) {
      total += s.value;
      found = true;
    }
  }
  return found ? total : null;
}

/** The name the admin API uses for a connection's transport: tcp, tcp+tls, ws, ws+deflate, wss, wss+deflate. */
function transportName(labels) {
  const tls = labels.tls === "true";
  if (labels.transport === "tcp") return tls ? "tcp+tls" : "tcp";
  return (tls ? "wss" : "ws") + (labels.deflate === "true" ? "+deflate" : "");
}

/** Cumulative bucket counts of a histogram: [{ le, count }] sorted by le (+Inf last). */
function buckets(metrics, name) {
  return (metrics.get(`${name}_bucket`) || [])
    .map((s) => ({ le: parseValue(s.labels.le), count: s.value }))
    .filter((b) => b.le !== null && !Number.isNaN(b.le))
    .sort((a, b) => a.le - b.le);
}

/** The q-quantile of the observations between two scrapes (linear within a bucket, as histogram_quantile). */
function quantile(q, now, before) {
  if (!now.length || !before || before.length !== now.length) return null;
  const delta = now.map((b, i) => ({ le: b.le, count: b.count - before[i].count }));
  const total = delta[delta.length - 1].count;
  if (!(total > 0) || delta.some((b) => b.count < 0)) return null;
  const rank = q * total;
  for (let i = 0; i < delta.length; i += 1) {
    if (delta[i].count < rank) continue;
    if (delta[i].le === Infinity) return i > 0 ? delta[i - 1].le : null;
    const lower = i > 0 ? delta[i - 1].le : 0;
    const below = i > 0 ? delta[i - 1].count : 0;
    const inBucket = delta[i].count - below;
    if (inBucket <= 0) return delta[i].le;
    return lower + (delta[i].le - lower) * ((rank - below) / inBucket);
  }
  return null;
}

const COUNTERS = {
  received: ["starling_messages_received_total"],
  delivered: ["starling_messages_delivered_total"],
  bytesIn: ["starling_network_bytes_total", (l) => l.direction === "in"],
  bytesOut: ["starling_network_bytes_total", (l) => l.direction === "out"],
  errors: ["starling_errors_total"],
  limits: ["starling_limits_hit_total"],
};

function takeSample(text, t) {
  const metrics = parseMetrics(text);
  const counters = {};
  for (const [key, [name, where]] of Object.entries(COUNTERS)) counters[key] = sum(metrics, name, where);
  const latency = buckets(metrics, "starling_delivery_latency_seconds");
  const transports = {};
  for (const s of metrics.get("starling_connections") || []) {
    const name = transportName(s.labels);
    transports[name] = (transports[name] || 0) + s.value;
  }
  const sample = {
    t,
    connections: sum(metrics, "starling_connections"),
    sessions: sum(metrics, "starling_sessions"),
    subscriptions: sum(metrics, "starling_subscriptions"),
    transports,
  };
  const dt = previous ? (t - previous.t) / 1000 : 0;
  for (const key of Object.keys(COUNTERS)) {
    const now = counters[key];
    const before = previous?.counters[key];
    // A counter that went down: the server restarted; this interval has no rate.
    sample[key] = dt > 0 && now !== null && before !== null && before !== undefined && now >= before ? (now - before) / dt : null;
  }
  sample.p50 = quantile(0.5, latency, previous?.latency);
  sample.p99 = quantile(0.99, latency, previous?.latency);
  sample.observations = previous?.latency?.length === latency.length && latency.length
    ? latency[latency.length - 1].count - previous.latency[previous.latency.length - 1].count : 0;
  previous = { t, counters, latency };
  return sample;
}

function pushSample(sample) {
  history.push(sample);
  while (history.length > MAX_SAMPLES || (history.length && history[0].t < sample.t - CHART_WINDOW_MS)) history.shift();
}

async function scrape() {
  const started = performance.now();
  try {
    const response = await fetch("/metrics", { cache: "no-store" });
    if (!response.ok) throw new Error(`HTTP ${response.status} ${response.statusText}`);
    const text = await response.text();
    setServerDown(null);
    const sample = takeSample(text, performance.now());
    scrapes += 1;
    pushSample(sample);
    showText($("metrics-error"), null);
    renderLive(sample);
  } catch (error) {
    previous = null; // the next rates start from the next two scrapes
    pushSample({ t: performance.now(), gap: true }); // a gap in the charts
    showText($("metrics-error"), `Cannot read /metrics: ${error.message}`);
    if (error instanceof TypeError) setServerDown(`Cannot reach the server: ${error.message}`);
    renderCharts();
  }
  metricsTimer = setTimeout(scrape, Math.max(200, METRICS_INTERVAL_MS - (performance.now() - started)));
}

function setStat(id, text) {
  const el = $(id);
  if (el.textContent !== text) el.textContent = text;
}

function renderLive(sample) {
  setStat("stat-received", fmtRate(sample.received));
  setStat("stat-delivered", fmtRate(sample.delivered));
  setStat("stat-connections", fmtInt(sample.connections));
  const parts = Object.entries(sample.transports).filter(([, n]) => n > 0).sort(([a], [b]) => a.localeCompare(b))
    .map(([name, n]) => `${name} ${intFormat.format(n)}`);
  setStat("stat-transports", parts.length ? parts.join(" · ") : "none open");
  setStat("stat-sessions", fmtInt(sample.sessions));
  setStat("stat-bytes-in", fmtBytesRate(sample.bytesIn));
  setStat("stat-bytes-out", fmtBytesRate(sample.bytesOut));
  // No deliveries in the interval: no latency to estimate.
  setStat("stat-p50", sample.observations > 0 ? fmtSeconds(sample.p50) : "–");
  setStat("stat-p99", sample.observations > 0 ? fmtSeconds(sample.p99) : "–");
  setStat("stat-errors", fmtRate(sample.errors));
  setStat("stat-limits", fmtRate(sample.limits));
  renderCharts();
}

// ================================================================================================ charts

const CHARTS = [
  { id: "messages", title: "Messages/s", format: fmtRate,
    series: [{ key: "received", label: "received" }, { key: "delivered", label: "delivered" }] },
  { id: "connections", title: "Connections", format: fmtInt,
    series: [{ key: "connections", label: "connections" }, { key: "sessions", label: "sessions" }] },
  { id: "network", title: "Network", format: fmtBytesRate, nice: niceBytes,
    series: [{ key: "bytesIn", label: "in" }, { key: "bytesOut", label: "out" }] },
  { id: "latency", title: "Delivery latency", format: fmtSeconds,
    series: [{ key: "p50", label: "p50" }, { key: "p99", label: "p99" }] },
  { id: "problems", title: "ERRORs and limits/s", format: fmtRate,
    series: [{ key: "errors", label: "ERRORs" }, { key: "limits", label: "limits" }] },
];

class Chart {
  constructor(def, parent) {
    this.def = def;
    const figure = make("figure", "chart");
    figure.id = `chart-${def.id}`;
    const caption = make("figcaption");
    caption.append(make("span", "chart-title", def.title));
    this.values = def.series.map((s, i) => {
      const item = make("span", `legend s${i}`);
      item.append(make("span", "swatch"), make("span", "legend-label", s.label), " ");
      const value = make("span", "legend-value", "–");
      item.append(value);
      caption.append(item);
      return value;
    });
    const plot = make("div", "plot");
    this.top = make("span", "y-top", "");
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", `0 0 ${CHART_W} ${CHART_H}`);
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", `${def.title}, up to the last 5 minutes`);
    for (const y of [0, CHART_H / 2, CHART_H]) {
      const line = document.createElementNS(SVG, "line");
      line.setAttribute("class", "grid");
      line.setAttribute("x1", "0");
      line.setAttribute("x2", String(CHART_W));
      line.setAttribute("y1", String(y));
      line.setAttribute("y2", String(y));
      svg.append(line);
    }
    this.paths = def.series.map((s, i) => {
      const path = document.createElementNS(SVG, "path");
      path.setAttribute("class", `line s${i}`);
      path.dataset.series = s.key;
      svg.append(path);
      return path;
    });
    this.svg = svg;
    plot.append(this.top, svg);
    const axis = make("div", "x-axis");
    this.since = make("span", "", "−5 min");
    axis.append(this.since, make("span", "", "now"));
    figure.append(caption, plot, axis);
    parent.append(figure);
  }

  /** Draws the samples of the last `span` ms up to `now` (the newest sample, at the right edge). */
  draw(now, span) {
    const { series, format } = this.def;
    let max = 0;
    for (const sample of history) {
      for (const s of series) {
        const v = sample[s.key];
        if (typeof v === "number" && Number.isFinite(v) && v > max) max = v;
      }
    }
    const top = (this.def.nice || niceCeil)(max);
    const start = now - span;
    let points = 0;
    series.forEach((s, i) => {
      let d = "";
      let penUp = true;
      let count = 0;
      let last = null;
      for (const sample of history) {
        const v = sample[s.key];
        if (typeof v !== "number" || !Number.isFinite(v)) {
          penUp = true;
          continue;
        }
        const x = ((sample.t - start) / span) * CHART_W;
        const y = CHART_H - (Math.min(v, top) / top) * CHART_H;
        // A lone point is drawn as a short dash so that it shows.
        d += penUp ? `M${x.toFixed(1)} ${y.toFixed(1)}h0.01` : `L${x.toFixed(1)} ${y.toFixed(1)}`;
        penUp = false;
        count += 1;
        last = v;
      }
      this.paths[i].setAttribute("d", d || "M0 0");
      this.paths[i].dataset.points = String(count);
      const text = format(last);
      if (this.values[i].textContent !== text) this.values[i].textContent = text;
      points = Math.max(points, count);
    });
    this.svg.dataset.points = String(points);
    const topText = format(top);
    if (this.top.textContent !== topText) this.top.textContent = topText;
    const sinceText = span >= 120000 ? `−${Math.round(span / 60000)} min` : `−${Math.round(span / 1000)} s`;
    if (this.since.textContent !== sinceText) this.since.textContent = sinceText;
  }
}

const charts = [];
function renderCharts() {
  if (!history.length) return;
  const now = history[history.length - 1].t;
  // The time axis grows with the history, from 1 minute up to CHART_WINDOW_MS: a fresh page shows its first
  // points spread out rather than squeezed at the right edge.
  const span = Math.min(CHART_WINDOW_MS, Math.max(CHART_MIN_SPAN_MS, now - history[0].t));
  for (const chart of charts) chart.draw(now, span);
}

// ================================================================================================ tables

/**
 * A table body whose rows are keyed and reused: render(items) updates only the cells whose text changed, moves rows
 * only when the order changed, and removes rows whose key is gone. At most MAX_ROWS items are passed in.
 */
class KeyedTable {
  constructor(table, { key, columns, actions, empty }) {
    this.tbody = table.tBodies[0];
    this.key = key;
    this.columns = columns; // [{ get(item) -> string, className, header }]
    this.actions = actions; // (item, row) -> [elements] (made once per row)
    this.empty = empty;
    this.rows = new Map();
    this.emptyRow = null;
  }

  render(items) {
    const seen = new Set();
    let prev = null;
    for (const item of items) {
      const k = this.key(item);
      if (seen.has(k)) continue;
      seen.add(k);
      let row = this.rows.get(k);
      if (!row) {
        row = this.create(item, k);
        this.rows.set(k, row);
      }
      row.item = item;
      this.columns.forEach((col, i) => {
        const text = col.get(item);
        const cell = row.cells[i];
        const target = row.textTargets[i];
        if (row.shown[i] !== text) {
          row.shown[i] = text;
          target.textContent = text;
          if (col.title) cell.title = col.title(item);
        }
        if (col.muted) cell.classList.toggle("muted", col.muted(item));
      });
      const want = prev ? prev.nextSibling : this.tbody.firstChild;
      if (want !== row.tr) this.tbody.insertBefore(row.tr, want);
      prev = row.tr;
    }
    for (const [k, row] of this.rows) {
      if (!seen.has(k)) {
        row.tr.remove();
        this.rows.delete(k);
      }
    }
    if (seen.size === 0) {
      if (!this.emptyRow) {
        this.emptyRow = make("tr", "empty-row");
        const td = make("td", "", this.empty);
        td.colSpan = this.columns.length + (this.actions ? 1 : 0);
        this.emptyRow.append(td);
      }
      if (!this.emptyRow.isConnected) this.tbody.append(this.emptyRow);
    } else if (this.emptyRow?.isConnected) {
      this.emptyRow.remove();
    }
  }

  create(item, k) {
    const tr = make("tr");
    tr.dataset.key = k;
    const row = { tr, cells: [], textTargets: [], shown: [], item };
    for (const col of this.columns) {
      const td = make(col.header ? "th" : "td", col.className || "");
      if (col.header) td.scope = "row";
      let target = td;
      if (col.button) {
        target = make("button", "link");
        target.type = "button";
        target.addEventListener("click", () => col.button(row.item, target));
        td.append(target);
      }
      row.cells.push(td);
      row.textTargets.push(target);
      tr.append(td);
    }
    if (this.actions) {
      const td = make("td", "actions");
      td.append(...this.actions(row));
      tr.append(td);
    }
    return row;
  }
}

function actionButton(label, className, onClick) {
  const button = make("button", `small ${className}`, label);
  button.type = "button";
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      await onClick();
    } finally {
      button.disabled = false;
    }
  });
  return button;
}

function moreNote(el, shown, total, what) {
  const more = total - shown;
  showText(el, more > 0 ? `${intFormat.format(more)} more ${what} not shown (showing ${intFormat.format(shown)})` : null, false);
}

function filterText(id) {
  return $(id).value.trim().toLowerCase();
}

// ---- connections

const connectionsTable = new KeyedTable($("connections-table"), {
  key: (c) => c.session,
  empty: "No connections.",
  columns: [
    { get: (c) => c.session, className: "mono", header: true },
    { get: (c) => c.transport ?? "", className: "transport" },
    { get: (c) => c.remote ?? "" },
    { get: (c) => c.user ?? "—", muted: (c) => c.user === null || c.user === undefined, className: "user" },
    { get: (c) => c.version ?? "—", muted: (c) => c.version === null || c.version === undefined },
    { get: (c) => fmtInt(c.subscriptions ?? 0), className: "num" },
  ],
  actions: (row) => [actionButton("Disconnect", "danger", () => disconnect(row.item))],
});

async function refreshConnections() {
  const seq = ++sequence.connections;
  const params = new URLSearchParams({ limit: String(MAX_ROWS) });
  const user = $("user-filter").value.trim();
  if (user) params.set("user", user);
  try {
    const data = await api("GET", `/api/v1/connections?${params}`);
    if (seq !== sequence.connections) return;
    const list = Array.isArray(data.connections) ? data.connections.slice(0, MAX_ROWS) : [];
    const total = Number.isFinite(data.total) ? data.total : list.length;
    connectionsTable.render(list);
    setStat("connections-count", `(${intFormat.format(total)}${user ? ` for ${user}` : ""})`);
    moreNote($("connections-more"), list.length, total, "connections");
    showText($("connections-error"), null);
  } catch (error) {
    if (seq === sequence.connections && !error.handled) showText($("connections-error"), `Cannot list the connections: ${describe(error)}`);
  }
}

async function disconnect(c) {
  const who = c.user ? `user ${c.user}` : "no login";
  const ok = await confirmAction(
    `Disconnect session ${c.session} (${who}, ${c.transport}, ${c.remote})? The client gets an ERROR and its connection closes.`,
    "Disconnect");
  if (!ok) return;
  try {
    const data = await api("DELETE", `/api/v1/connections/${enc(c.session)}`);
    showNotice($("connections-notice"), `Disconnected session ${data.disconnected ?? c.session}.`);
    showText($("connections-error"), null);
  } catch (error) {
    if (!error.handled) showText($("connections-error"), `Disconnecting ${c.session} failed: ${describe(error)}`);
  }
  refreshConnections();
}

// ---- queues

const queuesTable = new KeyedTable($("queues-table"), {
  key: (q) => q.name,
  empty: "No queues.",
  columns: [
    { get: (q) => q.name, className: "mono", header: true },
    { get: (q) => fmtInt(q.ready), className: "num ready" },
    { get: (q) => fmtInt(q.unacked), className: "num unacked" },
    { get: (q) => fmtInt(q.consumers), className: "num consumers" },
  ],
  actions: (row) => {
    const buttons = [actionButton("Purge", "danger", () => purge(row.item))];
    if (row.item.name.endsWith(".dlq")) buttons.push(actionButton("Redrive", "secondary redrive", () => redrive(row.item)));
    return buttons;
  },
});

async function refreshQueues() {
  const seq = ++sequence.queues;
  try {
    const data = await api("GET", "/api/v1/queues");
    if (seq !== sequence.queues) return;
    const all = Array.isArray(data.queues) ? data.queues : [];
    const filter = filterText("queue-filter");
    const matching = filter ? all.filter((q) => String(q.name).toLowerCase().includes(filter)) : all;
    queuesTable.render(matching.slice(0, MAX_ROWS));
    setStat("queues-count", `(${intFormat.format(all.length)})`);
    moreNote($("queues-more"), Math.min(matching.length, MAX_ROWS), matching.length, "queues");
    showText($("queues-error"), null);
  } catch (error) {
    if (seq === sequence.queues && !error.handled) showText($("queues-error"), `Cannot list the queues: ${describe(error)}`);
  }
}

async function purge(q) {
  const ok = await confirmAction(
    `Purge ${q.name}? Its ${fmtInt(q.ready)} ready messages are deleted (from the store too); unacknowledged ones stay.`,
    "Purge");
  if (!ok) return;
  try {
    const data = await api("DELETE", `/api/v1/queues/${enc(q.name)}/messages`);
    showNotice($("queues-notice"), `Purged ${fmtInt(data.purged)} messages from ${data.queue ?? q.name}.`);
    showText($("queues-error"), null);
  } catch (error) {
    if (!error.handled) showText($("queues-error"), `Purging ${q.name} failed: ${describe(error)}`);
  }
  refreshQueues();
}

async function redrive(q) {
  const ok = await confirmAction(
    `Move the ${fmtInt(q.ready)} ready messages of ${q.name} back to the queues they died in?`, "Redrive");
  if (!ok) return;
  try {
    const data = await api("POST", `/api/v1/queues/${enc(q.name)}/redrive`);
    showNotice($("queues-notice"), `Moved ${fmtInt(data.moved)} messages from ${data.queue ?? q.name} back.`);
    showText($("queues-error"), null);
  } catch (error) {
    if (!error.handled) showText($("queues-error"), `Redriving ${q.name} failed: ${describe(error)}`);
  }
  refreshQueues();
}

// ---- rooms and presence

const roomsTable = new KeyedTable($("rooms-table"), {
  key: (r) => r.destination ?? r.name,
  empty: "No rooms.",
  columns: [
    { get: (r) => r.name, className: "mono", header: true, button: (r) => showPresence(r),
      title: (r) => `${r.destination ?? r.name}: show who is present` },
    { get: (r) => fmtInt(r.members), className: "num members" },
    { get: (r) => fmtInt(r.lastOffset), className: "num" },
    { get: (r) => fmtInt(r.kept), className: "num" },
  ],
});

async function refreshRooms() {
  const seq = ++sequence.rooms;
  try {
    const data = await api("GET", "/api/v1/rooms");
    if (seq !== sequence.rooms) return;
    const all = Array.isArray(data.rooms) ? data.rooms : [];
    const filter = filterText("room-filter");
    const matching = filter ? all.filter((r) => `${r.name} ${r.destination}`.toLowerCase().includes(filter)) : all;
    roomsTable.render(matching.slice(0, MAX_ROWS));
    for (const row of roomsTable.rows.values()) {
      const open = openRoom !== null && (row.item.destination ?? row.item.name) === openRoom.destination;
      row.textTargets[0].setAttribute("aria-pressed", String(open));
    }
    setStat("rooms-count", `(${intFormat.format(all.length)})`);
    moreNote($("rooms-more"), Math.min(matching.length, MAX_ROWS), matching.length, "rooms");
    showText($("rooms-error"), null);
  } catch (error) {
    if (seq === sequence.rooms && !error.handled) showText($("rooms-error"), `Cannot list the rooms: ${describe(error)}`);
  }
}

function showPresence(room) {
  openRoom = { name: room.name, destination: room.destination ?? room.name };
  $("presence-room").textContent = openRoom.destination;
  $("presence-count").textContent = "";
  $("presence").hidden = false;
  presenceList.replaceChildren();
  presenceRows.clear();
  for (const row of roomsTable.rows.values()) {
    row.textTargets[0].setAttribute("aria-pressed", String((row.item.destination ?? row.item.name) === openRoom.destination));
  }
  refreshPresence();
}

function closePresence() {
  openRoom = null;
  sequence.presence += 1;
  $("presence").hidden = true;
  for (const row of roomsTable.rows.values()) row.textTargets[0].setAttribute("aria-pressed", "false");
}

const presenceList = $("presence-list");
const presenceRows = new Map(); // user -> { li, shown }

function metaText(meta) {
  if (!meta || typeof meta !== "object") return "";
  return Object.entries(meta).map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`).join(", ");
}

async function refreshPresence() {
  if (!openRoom) return;
  const room = openRoom;
  const seq = ++sequence.presence;
  try {
    const data = await api("GET", `/api/v1/rooms/${enc(room.destination)}`);
    if (seq !== sequence.presence || openRoom !== room) return;
    const members = Array.isArray(data.members) ? data.members : [];
    const seen = new Set();
    let prev = null;
    for (const m of members.slice(0, MAX_ROWS)) {
      const user = String(m.user);
      seen.add(user);
      let entry = presenceRows.get(user);
      if (!entry) {
        const li = make("li", "member");
        li.dataset.user = user;
        const name = make("span", "member-name", user);
        const conns = make("span", "member-connections");
        const meta = make("span", "member-status");
        li.append(make("span", "dot"), name, conns, meta);
        entry = { li, conns, meta, shown: {} };
        presenceRows.set(user, entry);
      }
      const connText = `${fmtInt(m.connections)} connection${m.connections === 1 ? "" : "s"}`;
      if (entry.shown.conns !== connText) entry.conns.textContent = entry.shown.conns = connText;
      const meta = metaText(m.meta);
      if (entry.shown.meta !== meta) entry.meta.textContent = entry.shown.meta = meta;
      entry.li.classList.toggle("away", m.meta?.status === "away");
      const want = prev ? prev.nextSibling : presenceList.firstChild;
      if (want !== entry.li) presenceList.insertBefore(entry.li, want);
      prev = entry.li;
    }
    for (const [user, entry] of presenceRows) {
      if (!seen.has(user)) {
        entry.li.remove();
        presenceRows.delete(user);
      }
    }
    const extra = members.length > MAX_ROWS ? `, ${intFormat.format(members.length - MAX_ROWS)} not shown` : "";
    $("presence-count").textContent = `(${intFormat.format(members.length)} user${members.length === 1 ? "" : "s"}${extra})`;
    showText($("presence-error"), members.length ? null : "Nobody is present (the room only keeps history).", false);
  } catch (error) {
    if (seq !== sequence.presence || error.handled) return;
    presenceList.replaceChildren();
    presenceRows.clear();
    $("presence-count").textContent = "";
    showText($("presence-error"), `Cannot show who is in ${room.destination}: ${describe(error)}`);
  }
}

// ---- subscribed destinations

const destinationsTable = new KeyedTable($("destinations-table"), {
  key: (d) => d.pattern,
  empty: "No subscriptions.",
  columns: [
    { get: (d) => d.pattern, className: "mono", header: true },
    { get: (d) => fmtInt(d.subscribers), className: "num" },
  ],
});

async function refreshDestinations() {
  const seq = ++sequence.destinations;
  try {
    const data = await api("GET", "/api/v1/destinations");
    if (seq !== sequence.destinations) return;
    const all = Array.isArray(data.subscribed) ? data.subscribed : [];
    const filter = filterText("destination-filter");
    const matching = filter ? all.filter((d) => String(d.pattern).toLowerCase().includes(filter)) : all;
    destinationsTable.render(matching.slice(0, MAX_ROWS));
    setStat("destinations-count", `(${intFormat.format(all.length)})`);
    moreNote($("destinations-more"), Math.min(matching.length, MAX_ROWS), matching.length, "destinations");
    showText($("destinations-error"), null);
  } catch (error) {
    if (seq === sequence.destinations && !error.handled) {
      showText($("destinations-error"), `Cannot list the destinations: ${describe(error)}`);
    }
  }
}

// ---- the refresh loop

async function refreshTables() {
  await Promise.all([refreshConnections(), refreshQueues(), refreshRooms(), refreshDestinations(), refreshPresence()]);
  tableRefreshes += 1;
}

function startTables() {
  stopTables();
  const generation = ++tablesGeneration;
  const tick = async () => {
    await refreshTables();
    if (generation === tablesGeneration && mode === "dashboard") tablesTimer = setTimeout(tick, TABLES_INTERVAL_MS);
  };
  tick();
}

function stopTables() {
  tablesGeneration += 1;
  clearTimeout(tablesTimer);
  tablesTimer = null;
}

// ================================================================================================ publish

/** `key=value` lines into an object (blank lines skipped); throws on a line without a key. */
function parseHeaderLines(text) {
  const headers = {};
  text.split("\n").forEach((raw, i) => {
    const line = raw.replace(/\r$/, "");
    if (!line.trim()) return;
    const eq = line.indexOf("=");
    const key = eq < 0 ? "" : line.slice(0, eq).trim();
    if (!key) throw new Error(`header line ${i + 1} is not key=value: "${line.slice(0, 60)}"`);
    headers[key] = line.slice(eq + 1).trim();
  });
  return headers;
}

async function publish(event) {
  event.preventDefault();
  const result = $("pub-result");
  const errorEl = $("pub-error");
  result.textContent = "";
  showText(errorEl, null);
  const destination = $("pub-destination").value.trim();
  let headers;
  try {
    headers = parseHeaderLines($("pub-headers").value);
  } catch (error) {
    showText(errorEl, `Not sent: ${error.message}`);
    return;
  }
  const payload = { destination, body: $("pub-body").value };
  if (Object.keys(headers).length) payload.headers = headers;
  const button = $("pub-submit");
  button.disabled = true;
  try {
    const data = await api("POST", "/api/v1/publish", payload);
    result.textContent = `Published to ${data.published ?? destination} at ${new Date().toLocaleTimeString("en-GB")}.`;
  } catch (error) {
    if (!error.handled) {
      const text = error.status === 422 ? `Refused: ${error.reason}` : `Publishing failed: ${describe(error)}`;
      showText(errorEl, text);
    }
  } finally {
    button.disabled = false;
  }
  if (mode === "dashboard") refreshQueues();
}

// ================================================================================================ start

function init() {
  $("server").textContent = location.host;
  const chartsEl = $("charts");
  for (const def of CHARTS) charts.push(new Chart(def, chartsEl));

  $("login").addEventListener("submit", async (event) => {
    event.preventDefault();
    const value = $("token").value.trim();
    if (!value) return;
    const button = $("login-submit");
    button.disabled = true;
    showText($("login-error"), null);
    try {
      await signIn(value);
    } finally {
      button.disabled = false;
    }
  });
  $("sign-out").addEventListener("click", () => {
    forgetToken();
    showLogin(null);
  });
  $("check-again").addEventListener("click", () => probe());
  $("presence-close").addEventListener("click", closePresence);
  $("publish-form").addEventListener("submit", publish);
  for (const [form, refresh] of [["connections-filter", refreshConnections], ["queues-filter", refreshQueues],
    ["rooms-filter", refreshRooms], ["destinations-filter", refreshDestinations]]) {
    $(form).addEventListener("submit", (event) => {
      event.preventDefault();
      refresh();
    });
    $(form).querySelector("input").addEventListener("input", () => {
      if (mode === "dashboard") refresh();
    });
  }

  scrape();
  const stored = sessionStorage.getItem(TOKEN_KEY);
  if (stored) signIn(stored, { stored: true });
  else probe();
}

init();
