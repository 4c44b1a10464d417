// The strata dashboard: reads the API of the server that serves it, every
// few seconds, and draws each page from the answers. Plain DOM, no
// framework, no inline script (the page's Content-Security-Policy forbids
// it). Pages are chosen by the URL's hash: #/overview, #/runs, ...
"use strict";

const REFRESH_MS = 3000;
const TOKEN_KEY = "strata.token";
const PAGES = ["overview", "runs", "features", "queues", "dead-letters", "sagas"];
const SAGA_STATES = ["running", "compensating", "completed", "compensated"];

// ---------------------------------------------------------------- helpers

const $ = (id) => document.getElementById(id);

/** An element with attributes and children (strings become text). */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value !== undefined && value !== null && value !== false) node.setAttribute(name, value);
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(child ?? ""));
  }
  return node;
}

/** Replaces the rows of table `id`; `rows` are arrays of cells. */
function fillTable(id, rows, empty = "nothing yet") {
  const body = $(id).tBodies[0];
  const columns = $(id).tHead.rows[0].cells.length;
  body.replaceChildren(
    ...(rows.length
      ? rows.map((cells) => el("tr", {}, ...cells.map((c) => (c instanceof Node && c.tagName === "TD" ? c : el("td", {}, c)))))
      : [el("tr", {}, el("td", { colspan: columns, class: "empty" }, empty))]),
  );
}

/** Fills definition list `id` from [term, value] pairs. */
function fillList(id, pairs) {
  $(id).replaceChildren(...pairs.flatMap(([term, value]) => [el("dt", {}, term), el("dd", {}, value)]));
}

const number = (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString("en"));
const percent = (x) => (x === null || x === undefined ? "–" : `${(100 * x).toFixed(1)} %`);
const when = (t) => (t ? new Date(t).toISOString().replace("T", " ").slice(0, 19) : "–");
const pill = (text, kind) => el("span", { class: `pill ${kind}` }, text);

function show(id, text) {
  const node = $(id);
  node.textContent = text || "";
  node.hidden = !text;
}

// ------------------------------------------------------------------ token

const token = () => sessionStorage.getItem(TOKEN_KEY) || "";

function showTokenState() {
  $("token-state").textContent = token() ? "token set" : "no token";
}

// -------------------------------------------------------------------- API

/** An answer of the API other than 2xx, with its error body. */
class ApiFailure extends Error {
  constructor(status, body) {
    const detail = (body && body.error) || {};
    super(detail.message || `HTTP ${status}`);
    this.status = status;
    this.kind = detail.kind || "";
    this.field = detail.field || "";
  }
}

/** What went wrong, for people; 401 and 403 say what to do. */
function describe(error) {
  if (!(error instanceof ApiFailure)) return `The API did not answer: ${error.message}`;
  if (error.status === 401) {
    return `401 Unauthorized: the API wants a valid token; enter it above. (${error.message})`;
  }
  if (error.status === 403) {
    return `403 Forbidden: this token lacks the scope for this (replaying needs admin). (${error.message})`;
  }
  const field = error.field ? ` [field: ${error.field}]` : "";
  return `${error.status} ${error.kind}: ${error.message}${field}`;
}

/** JSON from `path`; `accept` lists non-2xx statuses whose body is wanted. */
async function api(path, { method = "GET", body, accept = [] } = {}) {
  const headers = { Accept: "application/json" };
  if (token()) headers.Authorization = `Bearer ${token()}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
  });
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok && !accept.includes(response.status)) throw new ApiFailure(response.status, data);
  return data;
}

// -------------------------------------------------------------- the state

let ops = null; // the last /v1/ops answer
let lastDepths = null; // { at, depths: {queue: depth} } of the refresh before
const cacheSamples = []; // { at, l1, l2, miss } since the page opened

async function loadOps() {
  const previous = ops;
  ops = await api("/v1/ops");
  if (previous) {
    lastDepths = {
      at: Date.parse(previous.taken_at),
      depths: Object.fromEntries(previous.queues.map((q) => [q.queue, q.depth])),
    };
  }
  return ops;
}

// --------------------------------------------------------------- overview

async function overview() {
  const [ready, snapshot] = await Promise.all([api("/readyz", { accept: [503] }), loadOps()]);
  fillTable(
    "engines",
    ready.engines.map((e) => [
      e.engine,
      e.kind,
      pill(e.status, e.status === "up" ? "ok" : "bad"),
      e.rtt_ms === undefined ? e.error || "–" : `${e.rtt_ms.toFixed(2)} ms`,
      e.circuit || "–",
    ]),
  );
  $("ops-status").replaceWith(
    Object.assign(pill(snapshot.status, snapshot.status === "ok" ? "ok" : "bad"), { id: "ops-status" }),
  );
  const open = (snapshot.sagas || [])
    .filter((s) => s.state === "running" || s.state === "compensating")
    .reduce((n, s) => n + s.count, 0);
  const depth = snapshot.queues.reduce((n, q) => n + (q.depth || 0), 0);
  fillList("glance", [
    ["queued messages", number(depth)],
    ["dead letters", number(snapshot.dead_letters && snapshot.dead_letters.total)],
    ["outbox backlog", number(snapshot.outbox_backlog)],
    ["open sagas", snapshot.sagas ? number(open) : "–"],
    ["feature views", snapshot.feature_views ? number(snapshot.feature_views.length) : "–"],
  ]);
  $("unavailable").replaceChildren(
    ...snapshot.unavailable.map((u) => el("li", {}, `${u.part} unavailable: ${u.error}`)),
  );
}

/** Samples the caches' counters (every page: the chart covers the time since opening). */
async function sampleCaches() {
  const report = await api("/v1/cache");
  const sum = (key) => report.caches.reduce((n, c) => n + c[key], 0);
  cacheSamples.push({ at: Date.now(), l1: sum("l1_hits"), l2: sum("l2_hits"), miss: sum("misses") });
  if (cacheSamples.length > 1200) cacheSamples.shift();
  fillTable(
    "caches",
    report.caches.map((c) => [c.name, number(c.l1_hits), number(c.l2_hits), number(c.misses), number(c.stale_served), number(c.l2_errors), number(c.l1_entries)]),
  );
  drawCacheChart();
}

/**
 * The hit ratio of each tier between two samples: L1 of every lookup, L2
 * of the lookups L1 could not answer. `null` where no lookup happened.
 */
function cacheRatios() {
  const points = [];
  for (let i = 1; i < cacheSamples.length; i++) {
    const a = cacheSamples[i - 1];
    const b = cacheSamples[i];
    const l1 = b.l1 - a.l1;
    const l2 = b.l2 - a.l2;
    const miss = b.miss - a.miss;
    points.push({
      at: b.at,
      l1: l1 + l2 + miss > 0 ? l1 / (l1 + l2 + miss) : null,
      l2: l2 + miss > 0 ? l2 / (l2 + miss) : null,
    });
  }
  return points;
}

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(child));
  return node;
}

/** A line chart of the tiers' hit ratios, 0 to 100 %, over the time since the page opened. */
function drawCacheChart() {
  const width = 760;
  const height = 200;
  const pad = { left: 44, right: 150, top: 10, bottom: 24 };
  const points = cacheRatios();
  const start = cacheSamples.length ? cacheSamples[0].at : Date.now();
  const span = Math.max(REFRESH_MS * 10, Date.now() - start);
  const x = (t) => pad.left + ((t - start) / span) * (width - pad.left - pad.right);
  const y = (r) => pad.top + (1 - r) * (height - pad.top - pad.bottom);
  const chart = svg("svg", { id: "cache-svg", viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "cache hit ratio per tier" });
  for (const r of [0, 0.25, 0.5, 0.75, 1]) {
    chart.append(
      svg("line", { class: "grid-line", x1: pad.left, x2: width - pad.right, y1: y(r), y2: y(r) }),
      svg("text", { class: "axis", x: pad.left - 6, y: y(r) + 4, "text-anchor": "end" }, `${r * 100}%`),
    );
  }
  chart.append(svg("text", { class: "axis", x: pad.left, y: height - 6 }, "page opened"));
  chart.append(svg("text", { class: "axis", x: width - pad.right, y: height - 6, "text-anchor": "end" }, `${Math.round(span / 1000)} s`));
  let drawn = 0;
  for (const [tier, label] of [["l1", "L1 (memory)"], ["l2", "L2 (kv)"]]) {
    // One path; a gap where an interval had no lookup.
    let d = "";
    let pen = false;
    for (const p of points) {
      if (p[tier] === null) {
        pen = false;
        continue;
      }
      d += `${pen ? "L" : "M"}${x(p.at).toFixed(1)},${y(p[tier]).toFixed(1)} `;
      pen = true;
      drawn++;
    }
    const last = [...points].reverse().find((p) => p[tier] !== null);
    if (d) chart.append(svg("path", { class: `series ${tier}`, d }));
    for (const p of points.filter((p) => p[tier] !== null)) {
      chart.append(svg("circle", { class: `dot ${tier}`, cx: x(p.at).toFixed(1), cy: y(p[tier]).toFixed(1), r: 2.5 }));
    }
    const ly = tier === "l1" ? pad.top + 12 : pad.top + 30;
    chart.append(
      svg("rect", { class: `key ${tier}`, x: width - pad.right + 8, y: ly - 8, width: 10, height: 10 }),
      svg("text", { class: "axis", x: width - pad.right + 22, y: ly }, `${label} ${last ? percent(last[tier]) : "–"}`),
    );
  }
  if (!drawn) {
    chart.append(
      svg("text", { class: "axis", x: width / 2, y: height / 2, "text-anchor": "middle" }, "waiting for cache lookups since the page opened"),
    );
  }
  $("cache-chart").replaceChildren(chart);
}

// ------------------------------------------------------------------- runs

let runFilter = "";

async function runs() {
  const board = await api("/v1/leaderboard?top=10");
  fillTable(
    "leaderboard",
    board.leaders.map((p) => [String(p.rank), p.model_id, p.score.toFixed(4), when(p.reached_at)]),
    "no completed run yet",
  );
  const query = new URLSearchParams({ page_size: "20" });
  if (runFilter) query.set("filter", runFilter);
  try {
    const page = await api(`/v1/runs?${query}`);
    show("run-error", "");
    fillTable(
      "runs",
      page.runs.map((r) => [r.model_id, r.framework, r.status, r.dataset, r.accuracy === null ? "–" : r.accuracy.toFixed(4), when(r.started_at)]),
      runFilter ? "no run matches" : "no run yet",
    );
  } catch (error) {
    // A filter that does not parse is the user's: say where, keep the page.
    show("run-error", describe(error));
    fillTable("runs", [], "—");
    if (!(error instanceof ApiFailure) || error.status !== 400) throw error;
  }
}

// --------------------------------------------------------------- features

async function features() {
  const snapshot = await loadOps();
  if (!snapshot.feature_views) throw new Error("the feature views are unavailable (document engine)");
  fillTable(
    "views",
    snapshot.feature_views.map((v) => [
      v.view,
      v.entity,
      number(v.features),
      `${number(v.ttl_seconds)} s`,
      number(v.fresh_reads),
      number(v.stale_reads),
      number(v.missing_reads),
      v.stale_share === null ? "no read yet" : percent(v.stale_share),
    ]),
    "no feature view declared",
  );
}

// ----------------------------------------------------------------- queues

async function queues() {
  const snapshot = await loadOps();
  const dead = Object.fromEntries(((snapshot.dead_letters && snapshot.dead_letters.by_queue) || []).map((q) => [q.queue, q.count]));
  const seconds = lastDepths ? (Date.parse(snapshot.taken_at) - lastDepths.at) / 1000 : 0;
  fillTable(
    "queues",
    snapshot.queues.map((q) => {
      const before = lastDepths && lastDepths.depths[q.queue];
      const rate = seconds > 0 && q.depth !== null && before !== undefined && before !== null
        ? `${((q.depth - before) / seconds).toFixed(2)} /s`
        : "–";
      return [q.queue, number(q.depth), rate, number(q.consumers), number(dead[q.queue]), q.error || ""];
    }),
  );
  fillList("outbox", [["outbox backlog (events not yet sent)", number(snapshot.outbox_backlog)]]);
}

// ----------------------------------------------------------- dead letters

async function deadLetters() {
  const [page, snapshot] = await Promise.all([api("/v1/dead-letters?limit=50"), loadOps()]);
  const select = $("replay-queue");
  const queues = ((snapshot.dead_letters && snapshot.dead_letters.by_queue) || []).map((q) => q.queue);
  const known = [...select.options].map((o) => o.value);
  for (const q of queues) if (!known.includes(q)) select.append(el("option", { value: q }, q));
  show("dead-error", "");
  fillTable(
    "dead-letters",
    page.items.map((d) => [d.id, d.queue, d.error_class, d.error, String(d.attempts), when(d.dead_at), String(d.replays)]),
    "no dead letter",
  );
}

async function replay(event) {
  event.preventDefault();
  const queue = $("replay-queue").value;
  const body = {
    select: queue ? { queue } : { all: true },
    dry_run: $("replay-dry").checked,
    limit: 100,
  };
  const result = $("replay-result");
  try {
    const report = await api("/v1/dead-letters/replay", { method: "POST", body });
    result.className = "ok";
    const verb = report.dry_run ? "would replay" : "replayed";
    const failed = report.failed.map((f) => `${f.id}: ${f.reason}`).join("; ");
    result.textContent = `${verb} ${report.replayed.length}${report.replayed.length ? ` (${report.replayed.join(", ")})` : ""}; failed ${report.failed.length}${failed ? ` (${failed})` : ""}`;
  } catch (error) {
    result.className = "error";
    result.textContent = `Replay refused: ${describe(error)}`;
  }
  result.hidden = false;
  refresh();
}

// ------------------------------------------------------------------ sagas

async function sagas() {
  const [list, snapshot] = await Promise.all([api("/v1/sagas?limit=20"), loadOps()]);
  const counts = Object.fromEntries((snapshot.sagas || []).map((s) => [s.state, s.count]));
  fillList("saga-counts", SAGA_STATES.map((s) => [s, snapshot.sagas ? number(counts[s]) : "–"]));
  fillTable(
    "sagas",
    list.map((s) => [
      s.id,
      s.kind,
      s.subject,
      pill(s.state, s.state === "completed" ? "ok" : s.state === "compensated" ? "warn" : "busy"),
      s.steps.map((step) => `${step.step} ${step.state}`).join(", "),
      s.error || "",
      when(s.updated_at),
    ]),
    "no saga yet",
  );
}

// ----------------------------------------------------------------- paging

const LOADERS = { overview, runs, features, queues, "dead-letters": deadLetters, sagas };

/** The page named by the hash (`#/runs?filter=...`), and its query. */
function parseHash() {
  const [name, query] = location.hash.replace(/^#\/?/, "").split("?");
  return { page: PAGES.includes(name) ? name : "overview", query: new URLSearchParams(query || "") };
}

const currentPage = () => parseHash().page;

let refreshing = false;
let again = false;

/** Refreshes the page shown; one refresh at a time (one asked meanwhile follows). */
async function refresh() {
  if (refreshing) {
    again = true;
    return;
  }
  refreshing = true;
  const page = currentPage();
  try {
    await Promise.all([LOADERS[page](), sampleCaches()]);
    show("banner", "");
    $("refreshed").textContent = new Date().toLocaleTimeString("en-GB");
  } catch (error) {
    show("banner", describe(error));
  } finally {
    refreshing = false;
    if (again) {
      again = false;
      refresh();
    }
  }
}

function route() {
  const { page, query } = parseHash();
  if (page === "runs") {
    runFilter = query.get("filter") || "";
    $("run-filter").value = runFilter;
  }
  for (const section of document.querySelectorAll(".page")) section.hidden = section.dataset.page !== page;
  for (const link of document.querySelectorAll("#nav a")) {
    link.classList.toggle("active", link.getAttribute("href") === `#/${page}`);
  }
  document.title = `strata · ${page}`;
  refresh();
}

function start() {
  $("token").value = token();
  showTokenState();
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = $("token").value.trim();
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    else sessionStorage.removeItem(TOKEN_KEY);
    showTokenState();
    refresh();
  });
  $("token-clear").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    $("token").value = "";
    showTokenState();
    refresh();
  });
  $("run-search").addEventListener("submit", (event) => {
    event.preventDefault();
    const filter = $("run-filter").value.trim();
    // Through the hash, so that a search can be linked to; the same hash
    // again does not fire hashchange, so search at once then.
    const hash = filter ? `#/runs?${new URLSearchParams({ filter })}` : "#/runs";
    if (location.hash === hash) route();
    else location.hash = hash;
  });
  $("replay-form").addEventListener("submit", replay);
  window.addEventListener("hashchange", route);
  drawCacheChart();
  route();
  setInterval(refresh, REFRESH_MS);
}

document.addEventListener("DOMContentLoaded", start);
