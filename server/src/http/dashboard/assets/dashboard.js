// Shardcast's dashboard: polls GET /api/state and draws it. No library, nothing fetched from
// elsewhere; charts are inline SVG. Every drawn element carries data-* attributes with the
// figures it shows, so a test (server/tests/dashboard_browser.rs) can check them.
"use strict";

const REFRESH_MS = 2000;
const CHART_W = 560, CHART_H = 190, PAD_L = 48, PAD_R = 8, PAD_T = 8, PAD_B = 20;
const GROWS = new Set(["carve-out", "split", "move"]);

const ui = {
  selected: [],          // partitions asked for by the user (empty: the server's busiest)
  resolution: "tick",
  updates: 0,
  requested: 0,
  lastState: null,
};

function $(id) { return document.getElementById(id); }

// Requests go to the page's origin spelled without credentials: a page opened as
// user:password@host cannot fetch relative URLs (they would carry the credentials), and the
// browser sends the basic-auth credentials it already holds for the origin anyway.
function api(path) { return location.origin + path; }

function esc(s) {
  return String(s).replace(/[&<>"']/g, c => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

function num(v, digits) {
  if (v === null || v === undefined || !isFinite(v)) return "–";
  const d = digits === undefined ? 0 : digits;
  if (Math.abs(v) >= 1e6) return (v / 1e6).toFixed(1) + "M";
  if (Math.abs(v) >= 1e4) return (v / 1e3).toFixed(1) + "k";
  return v.toFixed(d);
}

function clock(ms) {
  if (!ms) return "–";
  const d = new Date(ms);
  return d.toLocaleTimeString([], { hour12: false });
}

function stateUrl() {
  const q = new URLSearchParams();
  for (const p of ui.selected) q.append("partition", p);
  q.set("resolution", ui.resolution);
  q.set("decisions", "100");
  return api("/api/state?" + q.toString());
}

function setBanner(kind, text) {
  const b = $("status");
  b.className = "banner " + kind;
  b.dataset.status = kind;
  b.textContent = text;
}

// A request the server has not answered by then is given up (a core that is blocked does not
// answer the connections the kernel gave it; the next request likely lands on another core).
const FETCH_TIMEOUT_MS = 3000;

async function refresh() {
  // Refreshes may overlap (a slow answer, a click): only the newest request's answer is drawn.
  const seq = ++ui.requested;
  let resp, doc = null;
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), FETCH_TIMEOUT_MS);
  try {
    resp = await fetch(stateUrl(), { cache: "no-store", signal: abort.signal });
    try { doc = await resp.json(); } catch (e) { doc = null; }
  } catch (e) {
    const why = e.name === "AbortError" ? "no answer within " + FETCH_TIMEOUT_MS / 1000 + " s" : e.message;
    if (seq !== ui.requested) return;
    setLink("The server did not answer the last request (" + why + "); retrying every " + REFRESH_MS / 1000 + " s.");
    if (!ui.lastState) setBanner("error", "No answer from the server yet (" + why + ").");
    return;
  } finally {
    clearTimeout(timer);
  }
  if (seq !== ui.requested) return;
  if (resp.status === 401) {
    setBanner("error", "The server asks for its password (requirepass): reload the page and give it.");
    return;
  }
  if (!resp.ok || !doc || doc.version === undefined) {
    const msg = doc && doc.messages ? doc.messages.join("; ") : "HTTP " + resp.status;
    setBanner(doc && doc.status === "starting" ? "starting" : "error", "Server " + (doc ? doc.status : "error") + ": " + msg);
    return;
  }
  setLink("");
  draw(doc);
}

function setLink(text) {
  const l = $("link");
  l.textContent = text;
  l.hidden = text === "";
}

function draw(s) {
  ui.lastState = s;
  ui.updates += 1;
  document.body.dataset.updates = String(ui.updates);
  document.body.dataset.atMs = String(s.at_ms);
  const text = s.status === "ok" ? "" : (s.status === "starting" ? "Starting: " : "Degraded: ") + s.messages.join("; ");
  setBanner(s.status, text);
  $("server").textContent = "v" + s.server.version + " · " + s.server.cores + " cores · epoch " +
    (s.server.shard_map_epoch === null ? "–" : s.server.shard_map_epoch) + " · up " + s.server.uptime_s + " s";
  $("updated").textContent = "round " + clock(s.at_ms);
  drawPolicy(s.policy);
  drawCharts(s);
  drawCores(s.cores);
  drawPartitions(s);
  drawMigrations(s.migrations);
  drawDecisions(s.decisions);
}

function drawPolicy(p) {
  const sel = $("policy");
  if (sel.options.length !== p.choices.length) {
    sel.innerHTML = p.choices.map(c => "<option>" + esc(c) + "</option>").join("");
  }
  if (document.activeElement !== sel) sel.value = p.current;
  sel.disabled = !p.switchable;
  sel.dataset.current = p.current;
  sel.title = p.switchable ? "switch the allocator's policy" : "switching needs the server's password";
}

async function switchPolicy() {
  const sel = $("policy");
  const wanted = sel.value;
  sel.disabled = true;
  try {
    const r = await fetch(api("/api/policy?policy=" + encodeURIComponent(wanted)), {
      method: "POST", headers: { "X-Shardcast-Dashboard": "1" },
    });
    const body = await r.json().catch(() => ({}));
    if (!r.ok) {
      setLink("Policy not switched: " + (body.messages || ["HTTP " + r.status]).join("; "));
      if (ui.lastState) sel.value = ui.lastState.policy.current;
    }
  } finally {
    refresh();
  }
}

// One chart: load, forecast peak as a step line with its upper quantile as a band, marks.
function chartSvg(c, horizonMs) {
  const load = c.load, fc = c.forecast;
  const times = load.map(p => p[0]).concat(fc.map(p => p[0])).concat(c.decisions.map(d => d.at_ms));
  if (times.length === 0) return '<p class="muted">No load recorded for this partition yet.</p>';
  let t0 = Math.min(...times), t1 = Math.max(...times);
  if (load.length) t1 = Math.max(t1, load[load.length - 1][0]);
  if (t1 <= t0) t1 = t0 + 1000;
  let ymax = 1;
  for (const p of load) ymax = Math.max(ymax, p[1]);
  for (const p of fc) ymax = Math.max(ymax, p[2]);
  ymax *= 1.1;
  const x = t => PAD_L + (t - t0) / (t1 - t0) * (CHART_W - PAD_L - PAD_R);
  const y = v => CHART_H - PAD_B - v / ymax * (CHART_H - PAD_T - PAD_B);
  const parts = [];
  parts.push('<line class="axis" x1="' + PAD_L + '" y1="' + y(0) + '" x2="' + (CHART_W - PAD_R) + '" y2="' + y(0) + '"/>');
  parts.push('<line class="axis" x1="' + PAD_L + '" y1="' + PAD_T + '" x2="' + PAD_L + '" y2="' + y(0) + '"/>');
  for (const f of [0.5, 1]) {
    parts.push('<text x="' + (PAD_L - 4) + '" y="' + (y(ymax / 1.1 * f) + 3) + '" text-anchor="end">' + num(ymax / 1.1 * f) + '</text>');
  }
  parts.push('<text x="' + PAD_L + '" y="' + (CHART_H - 4) + '">' + clock(t0) + '</text>');
  parts.push('<text x="' + (CHART_W - PAD_R) + '" y="' + (CHART_H - 4) + '" text-anchor="end">' + clock(t1) + '</text>');
  if (fc.length) {
    // Each published forecast holds until the next one (the last for its horizon).
    const top = [], bottom = [], peak = [];
    fc.forEach((p, i) => {
      const end = i + 1 < fc.length ? fc[i + 1][0] : Math.min(t1, p[0] + horizonMs);
      const xa = x(p[0]), xb = x(Math.max(end, p[0]));
      top.push(xa + "," + y(p[2]), xb + "," + y(p[2]));
      bottom.push(xa + "," + y(p[1]), xb + "," + y(p[1]));
      peak.push(xa + "," + y(p[1]), xb + "," + y(p[1]));
    });
    parts.push('<polygon class="band" points="' + top.concat(bottom.reverse()).join(" ") + '"/>');
    parts.push('<polyline class="peak" points="' + peak.join(" ") + '"/>');
  }
  if (load.length) {
    parts.push('<polyline class="load" points="' + load.map(p => x(p[0]) + "," + y(p[1])).join(" ") + '"/>');
  }
  c.decisions.forEach((d, i) => {
    const kind = GROWS.has(d.action) ? "grow" : "shrink";
    const xm = x(d.at_ms);
    const label = d.by === "operator" ? d.action + " (operator)" : d.action;
    parts.push('<g class="mark ' + kind + '" data-action="' + esc(d.action) + '" data-by="' + esc(d.by) + '"><title>' + esc(clock(d.at_ms) + " " + d.action + ": " + d.change) + '</title>' +
      '<line x1="' + xm + '" y1="' + PAD_T + '" x2="' + xm + '" y2="' + y(0) + '"/>' +
      '<text x="' + (xm + 2) + '" y="' + (PAD_T + 9 + (i % 3) * 11) + '">' + esc(label) + '</text></g>');
  });
  return '<svg viewBox="0 0 ' + CHART_W + " " + CHART_H + '" role="img">' + parts.join("") + "</svg>";
}

function drawCharts(s) {
  const html = s.charts.map(c => {
    const last = c.load.length ? c.load[c.load.length - 1][1] : null;
    const f = c.forecast.length ? c.forecast[c.forecast.length - 1] : null;
    return '<figure class="chart" data-partition="' + esc(c.partition) + '" data-shards="' + c.shards +
      '" data-load-points="' + c.load.length + '" data-forecast-points="' + c.forecast.length +
      '" data-decisions="' + c.decisions.length + '">' +
      "<figcaption>" + esc(c.partition) + "<span>" + num(last) + " ops/s now</span><span>forecast " +
      (f ? num(f[1]) + " (upper " + num(f[2]) + ")" : "–") + "</span><span>" + c.shards + " own shard" + (c.shards === 1 ? "" : "s") + "</span></figcaption>" +
      chartSvg(c, s.server.forecast_horizon_ms || 0) +
      '<div class="legend"><span><i style="background:var(--load)"></i>load</span><span><i style="background:var(--forecast)"></i>forecast peak</span>' +
      '<span><i style="background:var(--band);height:8px"></i>upper quantile</span><span><i style="background:#7c3aed"></i>split/carve-out/move</span><span><i style="background:#0891b2"></i>merge/fold-back</span></div>' +
      "</figure>";
  }).join("");
  $("charts").innerHTML = html || '<p class="muted">No partition has load in the history yet.</p>';
}

function drawCores(cores) {
  $("cores").innerHTML = cores.map(c => {
    const total = c.shards.reduce((a, s) => a + s.ops_per_sec, 0) || 1;
    const shards = c.shards.map(s => {
      const grow = Math.max(1, Math.round(s.ops_per_sec / total * 20));
      const tip = "shard " + s.shard + " · " + s.partition + " · " + num(s.ops_per_sec) + " ops/s · " + s.keys + " keys · p99 " + num(s.p99_us) + " µs · " + s.health + (s.reason ? ": " + s.reason : "");
      return '<div class="shard ' + esc(s.health) + (s.shared ? " shared" : "") + (s.migrating ? " migrating" : "") +
        '" style="flex-grow:' + grow + '" data-shard="' + s.shard + '" data-partition="' + esc(s.partition) +
        '" data-health="' + esc(s.health) + '" title="' + esc(tip) + '">#' + s.shard + " " + esc(s.partition) + " " + num(s.ops_per_sec) + "</div>";
    }).join("");
    const more = c.shards_total > c.shards.length ? '<span class="muted">+' + (c.shards_total - c.shards.length) + " more</span>" : "";
    return '<div class="core ' + esc(c.health) + '" data-core="' + c.core + '" data-health="' + esc(c.health) +
      '" data-shards-total="' + c.shards_total + '"><h3>core ' + c.core + "<span>" + esc(c.health) + "</span><span>busy " +
      (c.busy_ratio * 100).toFixed(0) + "%</span><span>" + num(c.ops_per_sec) + " ops/s</span><span>" + c.shards_total + " shards</span></h3>" +
      (c.reason ? '<div class="reason">' + esc(c.reason) + "</div>" : "") +
      '<div class="shards">' + shards + more + "</div></div>";
  }).join("");
}

function drawPartitions(s) {
  const charted = new Set(s.charts.map(c => c.partition));
  $("partitions-count").textContent = s.partitions.length < s.partitions_total
    ? "the busiest " + s.partitions.length + " of " + s.partitions_total : s.partitions_total + " in all";
  $("partitions").tBodies[0].innerHTML = s.partitions.map(p =>
    '<tr data-partition="' + esc(p.name) + '" data-shards="' + p.shards + '" data-charted="' + p.charted + '"' +
    (charted.has(p.name) ? ' class="charted"' : "") + (p.charted ? "" : ' title="not in the load history: no chart"') + ">" +
    "<td>" + esc(p.name) + '</td><td class="num">' + num(p.ops_per_sec) + '</td><td class="num">' + num(p.forecast_peak) +
    '</td><td class="num">' + num(p.forecast_upper) + "</td><td>" + esc(p.model || "–") + '</td><td class="num">' +
    (p.shards ? p.shards : '<span class="muted">shared #' + p.home + "</span>") + "</td></tr>").join("");
}

function drawMigrations(m) {
  $("migrations-count").textContent = m.completed + " committed, " + m.aborted + " aborted since start";
  const r = m.running;
  $("migration-running").innerHTML = r
    ? '<div class="running" data-running="' + esc(r.kind) + '">Running: ' + esc(r.kind) + " of " + esc(r.partition) +
      ", shard " + r.source + " (core " + r.source_core + ") to " + r.target + " (core " + r.target_core + "), " +
      r.keys + " keys, " + (r.bytes / 1e6).toFixed(1) + " MB in " + (r.ms / 1000).toFixed(1) + " s</div>"
    : '<div class="muted">No migration running.</div>';
  $("migrations").tBodies[0].innerHTML = m.recent.map(x =>
    '<tr data-by="' + esc(x.by) + '"><td>' + clock(x.started_ms) + "</td><td>" + esc(x.kind) + " " + x.source + "→" + x.target + " (core " + x.source_core +
    "→" + x.target_core + ")</td><td>" + esc(x.partition) + '</td><td class="num">' + x.keys + '</td><td class="num">' +
    (x.bytes / 1e6).toFixed(2) + '</td><td class="num">' + x.mb_per_sec.toFixed(1) + '</td><td class="num">' +
    (x.pause_ms === null ? "–" : x.pause_ms.toFixed(2)) + "</td><td" + (x.error ? ' title="' + esc(x.error) + '"' : "") + ">" +
    esc(x.state) + "</td></tr>").join("");
}

function drawDecisions(ds) {
  $("decisions").tBodies[0].innerHTML = ds.map(d =>
    '<tr data-action="' + esc(d.action) + '" data-at-ms="' + d.at_ms + '"><td>' + clock(d.at_ms) + "</td><td>" + esc(d.partition) + "</td><td>" + esc(d.policy) +
    "</td><td>" + esc(d.action) + "</td><td>" + esc(d.change) + '</td><td class="num">' + num(d.observed) +
    '</td><td class="num">' + num(d.demand) + '</td><td class="num">' + num(d.forecast_upper) + "</td><td>" + esc(d.model) +
    "</td><td>" + esc(d.reason) + (d.rejected ? '<br><span class="muted">not: ' + esc(d.rejected) + "</span>" : "") + "</td></tr>").join("");
}

function togglePartition(name) {
  if (ui.selected.length === 0 && ui.lastState) {
    ui.selected = ui.lastState.charts.map(c => c.partition);
  }
  const i = ui.selected.indexOf(name);
  if (i >= 0) ui.selected.splice(i, 1); else ui.selected.unshift(name);
  ui.selected = ui.selected.slice(0, 16);
  refresh();
}

$("partitions").addEventListener("click", e => {
  const tr = e.target.closest("tr[data-partition]");
  if (tr && tr.dataset.charted === "true") togglePartition(tr.dataset.partition);
});
$("policy").addEventListener("change", switchPolicy);
$("resolution").addEventListener("change", e => { ui.resolution = e.target.value; refresh(); });
refresh();
setInterval(refresh, REFRESH_MS);
