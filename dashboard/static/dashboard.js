// Live pipeline dashboard: one WebSocket to /ws (reconnects by itself), panels re-rendered from
// each snapshot, throughput charts fed from the server's history points.
const TYPES = ["artists", "labels", "masters", "releases"];
const MAX_POINTS = 150;
const STALE_MS = 7000; // no message for this long: the socket is treated as dead and reopened
const fmt = new Intl.NumberFormat();

const $ = (sel) => document.querySelector(sel);
const state = {
  ws: null, retry: 0, timer: null, watchdog: null, lastMessage: 0, latest: null,
  points: [], charts: null, prevStatus: new Map(), connectedOnce: false,
};

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) if (c !== null && c !== undefined) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}
const num = (v) => (typeof v === "number" && Number.isFinite(v) ? fmt.format(Math.round(v * 10) / 10) : "–");
function bytes(n) {
  if (!Number.isFinite(n) || n <= 0) return "–";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0; while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}
const STATUS_TEXT = { ready: "ready", not_ready: "not ready", down: "down", up: "up", operational: "Operational", degraded: "Degraded", partial: "Partial", unknown: "Unknown" };
const badge = (status, testid) => el("span", { class: `badge badge-${status || "unknown"}`, "data-testid": testid, text: STATUS_TEXT[status] || status || "unknown" });

// ---------------------------------------------------------------- event log (browser-side)
function logEvent(text, level = "") {
  const list = $("#events");
  const now = new Date();
  list.prepend(el("li", { class: level }, el("time", { datetime: now.toISOString(), text: now.toLocaleTimeString() }), text));
  while (list.children.length > 50) list.lastElementChild.remove();
}

// ---------------------------------------------------------------- renderers
function healthRows(health) {
  // Numeric facts from a service's /health JSON (graphinator/tableinator message counts etc.).
  const rows = [];
  if (!health) return rows;
  const skip = new Set(["uptime_s", "timestamp", "status", "service", "files", "version", "checks"]);
  for (const [k, v] of Object.entries(health)) {
    if (skip.has(k) || rows.length >= 10) continue;
    if (typeof v === "number") rows.push([k.replaceAll("_", " "), num(v)]);
    else if (v && typeof v === "object" && !Array.isArray(v)) {
      for (const [sk, sv] of Object.entries(v)) {
        if (typeof sv === "number" && rows.length < 10) rows.push([`${k.replaceAll("_", " ")} · ${sk}`, num(sv)]);
      }
    }
  }
  if (health.version) rows.push(["version", String(health.version)]);
  return rows;
}

function renderServices(services) {
  const box = $("#services");
  box.replaceChildren(...services.map((s) => {
    const rows = [["health", s.health_status || (s.alive ? "alive" : "no answer")], ...healthRows(s.health)];
    return el("article", { class: "card", "data-testid": `service-${s.name}`, "data-status": s.status },
      el("h3", {}, el("span", { text: s.name }), badge(s.status, `service-${s.name}-status`)),
      el("dl", {}, rows.map(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })])),
      s.error ? el("p", { class: "error", text: s.error }) : null);
  }));
  for (const s of services) {
    const prev = state.prevStatus.get(s.name);
    if (prev !== undefined && prev !== s.status) {
      logEvent(`${s.name}: ${STATUS_TEXT[prev] || prev} → ${STATUS_TEXT[s.status] || s.status}`, s.status === "ready" ? "ok" : "bad");
    }
    state.prevStatus.set(s.name, s.status);
  }
}

function renderPipeline(rows) {
  const tbody = $("#pipeline tbody");
  tbody.replaceChildren(...rows.map((r) => {
    const pct = r.progress === null || r.progress === undefined ? null : Math.round(r.progress * 1000) / 10;
    const g = r.queues.graphinator, t = r.queues.tableinator;
    return el("tr", { "data-testid": `pipeline-${r.type}` },
      el("th", { scope: "row", text: r.type }),
      el("td", {}, pct === null ? el("span", { class: "phase", text: r.phase || "–" })
        : [el("div", { class: "progress", role: "progressbar", "aria-valuenow": pct, "aria-valuemin": 0, "aria-valuemax": 100, "aria-label": `${r.type} extraction` },
          el("span", { style: `width:${pct}%` })), el("span", { class: "phase", text: `${r.phase || ""} ${pct}%` })]),
      el("td", { class: "num", "data-testid": `extracted-${r.type}`, text: num(r.extracted) }),
      el("td", { class: "num", text: num(r.records_per_s) }),
      el("td", { class: "num", text: num(g.messages) }),
      el("td", { class: `num ${g.dlq > 0 ? "alert" : ""}`, text: num(g.dlq) }),
      el("td", { class: "num", text: num(t.messages) }),
      el("td", { class: `num ${t.dlq > 0 ? "alert" : ""}`, text: num(t.dlq) }),
      el("td", { class: "num", "data-testid": `neo4j-${r.type}`, text: num(r.neo4j) }),
      el("td", { class: "num", "data-testid": `postgres-${r.type}`, text: num(r.postgres) }));
  }));
}

function storeCard(name, testid, status, error, rows) {
  return el("article", { class: "card", "data-testid": testid, "data-status": status },
    el("h3", {}, el("span", { text: name }), badge(status, `${testid}-status`)),
    el("dl", {}, rows.map(([k, v, id]) => [el("dt", { text: k }), el("dd", { text: v, "data-testid": id })])),
    error ? el("p", { class: "error", text: error }) : null);
}

function renderStores(snap) {
  const n = snap.neo4j, p = snap.postgres, r = snap.rabbitmq;
  const neoRows = [["nodes", num(n.nodes), "neo4j-nodes"], ["relationships", num(n.relationships), "neo4j-relationships"],
    ...Object.entries(n.counts || {}).map(([label, c]) => [label, num(c), `neo4j-count-${label}`])];
  const pgRows = [["rows (4 entity tables)", num(p.rows), "pg-rows"], ["connections", num(p.connection_count)], ["size", bytes(p.size_bytes)],
    ...Object.entries(p.counts || {}).filter(([t]) => t !== "schema_migrations")
      .map(([t, c]) => [`${t}${(p.exact || []).includes(t) ? "" : " (est.)"}`, num(c), `pg-count-${t}`])];
  const mqRows = [["queued", num(r.totals.messages), "mq-queued"], ["dead-lettered", num(r.totals.dlq_messages), "mq-dlq"],
    ["publish/s", num(r.totals.publish_rate)], ["ack/s", num(r.totals.ack_rate)]];
  $("#stores").replaceChildren(
    storeCard("Neo4j", "store-neo4j", n.status, n.error, neoRows),
    storeCard("PostgreSQL", "store-postgres", p.status, p.error, pgRows),
    storeCard("RabbitMQ", "store-rabbitmq", r.status, r.error, mqRows));
}

function renderQueues(snap) {
  const dlqOnly = $("#dlq-only").checked;
  const queues = snap.queues.filter((q) => !dlqOnly || q.dlq);
  const tbody = $("#queues tbody");
  if (!queues.length) {
    tbody.replaceChildren(el("tr", {}, el("td", { colspan: 7, class: "empty", text: snap.rabbitmq.status === "up" ? "No queues yet" : "RabbitMQ unreachable" })));
  } else {
    tbody.replaceChildren(...queues.map((q) => el("tr", { class: q.dlq ? "dlq" : "", "data-testid": `queue-${q.name}` },
      el("td", { text: q.name }),
      el("td", { class: `num ${q.dlq && q.messages > 0 ? "alert" : ""}`, text: num(q.messages) }),
      el("td", { class: "num", text: num(q.messages_ready) }),
      el("td", { class: "num", text: num(q.messages_unacknowledged) }),
      el("td", { class: "num", text: num(q.consumers) }),
      el("td", { class: "num", text: num(q.message_rate) }),
      el("td", { class: "num", text: num(q.ack_rate) }))));
  }
  const err = $("#rabbit-error");
  err.hidden = !snap.rabbitmq.error;
  err.textContent = snap.rabbitmq.error ? `Management API: ${snap.rabbitmq.error}` : "";
}

function render(snap) {
  state.latest = snap;
  const overall = $("#overall");
  overall.className = `badge badge-${snap.overall.status}`;
  overall.textContent = STATUS_TEXT[snap.overall.status] || snap.overall.status;
  overall.dataset.status = snap.overall.status;
  const updated = $("#updated");
  updated.textContent = new Date(snap.timestamp).toLocaleTimeString();
  updated.setAttribute("datetime", snap.timestamp);
  updated.dataset.seq = snap.seq;
  renderServices(snap.services);
  renderPipeline(snap.pipeline);
  renderStores(snap);
  renderQueues(snap);
  for (const q of snap.queues) if (!q.dlq && q.messages > 1000) logEvent(`queue ${q.name} holds ${fmt.format(q.messages)} messages`, "warn");
}

// ---------------------------------------------------------------- charts
function makeCharts() {
  if (!window.Chart) return null;
  const Chart = window.Chart;
  Chart.defaults.color = "#8b98a5";
  Chart.defaults.borderColor = "#2a3440";
  const common = {
    animation: false, responsive: true, maintainAspectRatio: false, parsing: false, normalized: true,
    interaction: { mode: "index", intersect: false },
    scales: { x: { type: "linear", ticks: { callback: (v) => new Date(v).toLocaleTimeString(), maxTicksLimit: 6 } }, y: { beginAtZero: true } },
    plugins: { legend: { labels: { boxWidth: 12 } } },
    elements: { point: { radius: 0 }, line: { borderWidth: 2, tension: 0.2 } },
  };
  const line = (label, color) => ({ label, data: [], borderColor: color, backgroundColor: color });
  return {
    rates: new Chart($("#chart-rates"), { type: "line", options: common, data: { datasets: [
      line("extracted/s", "#388bfd"), line("published/s", "#a371f7"), line("acked/s", "#d29922"),
      line("Neo4j nodes/s", "#2ea043"), line("PG rows/s", "#39c5cf")] } }),
    depth: new Chart($("#chart-depth"), { type: "line", options: common, data: { datasets: [
      line("queued", "#388bfd"), line("dead-lettered", "#f85149")] } }),
  };
}

function updateCharts() {
  if (!state.charts) state.charts = makeCharts();
  if (!state.charts) return;
  const pts = state.points;
  const xy = (key) => pts.filter((p) => p[key] !== null && p[key] !== undefined).map((p) => ({ x: p.t * 1000, y: p[key] }));
  const r = state.charts.rates.data.datasets;
  r[0].data = xy("extractor_rps"); r[1].data = xy("publish_rate"); r[2].data = xy("ack_rate");
  r[3].data = xy("neo4j_rate"); r[4].data = xy("pg_rate");
  const d = state.charts.depth.data.datasets;
  d[0].data = xy("queue_depth"); d[1].data = xy("dlq_depth");
  state.charts.rates.update("none");
  state.charts.depth.update("none");
}

function addPoint(p) {
  if (!p) return;
  const last = state.points[state.points.length - 1];
  if (last && last.seq === p.seq && last.t === p.t) return;
  state.points.push(p);
  if (state.points.length > MAX_POINTS) state.points.splice(0, state.points.length - MAX_POINTS);
}

// ---------------------------------------------------------------- WebSocket with reconnect
function setWs(up, text) {
  const ws = $("#ws-state");
  ws.className = `ws ${up ? "ws-up" : "ws-down"}`;
  ws.textContent = text;
  ws.dataset.state = up ? "connected" : "disconnected";
}

function scheduleReconnect() {
  if (state.timer) return;
  const delay = Math.min(5000, 500 * 2 ** state.retry);
  state.retry += 1;
  setWs(false, `disconnected, retrying in ${Math.round(delay / 100) / 10}s`);
  state.timer = setTimeout(() => { state.timer = null; connect(); }, delay);
}

function connect() {
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
  let ws;
  try { ws = new WebSocket(url); } catch { scheduleReconnect(); return; }
  state.ws = ws;
  setWs(false, "connecting…");
  ws.addEventListener("open", () => {
    state.retry = 0;
    state.lastMessage = Date.now();
    setWs(true, "live");
    logEvent(state.connectedOnce ? "reconnected to the dashboard" : "connected to the dashboard", "ok");
    state.connectedOnce = true;
  });
  ws.addEventListener("message", (ev) => {
    state.lastMessage = Date.now();
    let msg;
    try { msg = JSON.parse(ev.data); } catch { return; }
    if (msg.type === "history") {
      state.points = [];
      for (const p of msg.data || []) addPoint(p);
      updateCharts();
    } else if (msg.type === "metrics_update") {
      render(msg.data);
      addPoint(msg.data.point);
      updateCharts();
    }
  });
  ws.addEventListener("close", () => {
    if (state.ws !== ws) return;
    state.ws = null;
    if (state.connectedOnce) logEvent("connection lost", "bad");
    scheduleReconnect();
  });
  ws.addEventListener("error", () => { /* "close" follows and schedules the retry */ });
}

state.watchdog = setInterval(() => {
  if (state.ws && state.ws.readyState === WebSocket.OPEN && Date.now() - state.lastMessage > STALE_MS) {
    state.ws.close(); // no snapshot for too long: reopen
  }
}, 1000);

// Module scripts run once the document is parsed, so the elements exist here.
$("#dlq-only").addEventListener("change", () => state.latest && renderQueues(state.latest));
connect();
