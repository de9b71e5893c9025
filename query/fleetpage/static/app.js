// The fleet-health page: polls the query API and redraws. Every value from the fleet (node
// names, reasons, job ids) is written with textContent, never as markup.
"use strict";

const states = ["healthy", "degraded", "restart_app", "reset_gpu", "reboot_node", "service", "stopped_reporting"];
const refreshMs = Math.max(1000, Number(new URLSearchParams(location.search).get("refresh") || 5000));

function token() { return sessionStorage.getItem("gpufleet-token") || ""; }

class Unauthorized extends Error {}

async function api(path) {
  const headers = {};
  if (token()) headers.Authorization = "Bearer " + token();
  const r = await fetch(path, { headers, cache: "no-store" });
  if (r.status === 401) throw new Unauthorized("the API wants a token");
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(path.split("?")[0] + ": " + (body.error || r.status));
  return body;
}

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function ago(t) {
  const s = Math.max(0, Math.round((Date.now() - new Date(t).getTime()) / 1000));
  if (s < 120) return s + " s ago";
  if (s < 7200) return Math.round(s / 60) + " min ago";
  return Math.round(s / 3600) + " h ago";
}

function renderStates(h) {
  const box = document.getElementById("states");
  box.replaceChildren();
  const total = el("div", null, "card");
  total.append(el("div", h.fleet.gpus, "n"), el("div", "GPUs"));
  box.append(total);
  for (const s of states) {
    const c = el("div", null, "card " + s);
    c.dataset.state = s;
    c.append(el("div", h.fleet[s] || 0, "n"), el("div", s.replace("_", " ")));
    box.append(c);
  }
}

function fillRows(tbody, rows, cols, empty) {
  tbody.replaceChildren();
  if (rows.length === 0) {
    const tr = el("tr");
    const td = el("td", empty, "empty");
    td.colSpan = cols;
    tr.append(td);
    tbody.append(tr);
    return;
  }
  for (const cells of rows) {
    const tr = el("tr");
    for (const [text, cls] of cells) tr.append(el("td", text, cls));
    tbody.append(tr);
  }
}

function renderDrain(d) {
  const rows = d.gpus.map((g) => [[g.action, "action"], [g.cluster], [g.node], [g.gpu], [g.uuid], [g.reason], [ago(g.since)], [g.job_id || "—"]]);
  fillRows(document.querySelector("#drain tbody"), rows, 8, "Nothing to act on.");
  document.getElementById("drain-note").textContent = d.truncated ? "Showing the first " + d.gpus.length + "; more GPUs need action." : "";
  document.querySelector("#drain").dataset.count = String(d.gpus.length);
}

function renderXids(list) {
  const rows = list.events.slice().reverse().map((e) => [
    [new Date(e.time).toLocaleTimeString()], [e.cluster], [e.node], [e.gpu], [e.code],
    [e.mnemonic ? e.mnemonic + ": " + e.description : "not in the Xid catalog"], [e.action || "—"], [e.category || "—"]]);
  fillRows(document.querySelector("#xids tbody"), rows, 8, "No XIDs in the last hour.");
}

// drawLine plots points [{t: ms, v: number}] into svg, scaled to its data.
function drawLine(svg, points, unit) {
  const ns = "http://www.w3.org/2000/svg";
  svg.replaceChildren();
  const W = 600, H = 160, L = 44, B = 18;
  const pts = points.filter((p) => Number.isFinite(p.v));
  if (pts.length === 0) {
    const t = document.createElementNS(ns, "text");
    t.setAttribute("x", "50%"); t.setAttribute("y", "50%"); t.setAttribute("class", "axis");
    t.textContent = "no data";
    svg.append(t);
    return;
  }
  const t0 = pts[0].t, t1 = Math.max(pts[pts.length - 1].t, t0 + 1);
  const vmax = Math.max(...pts.map((p) => p.v), 1e-9) * 1.1;
  const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - 4);
  const y = (v) => H - B - (v / vmax) * (H - B - 6);
  for (const f of [0, 0.5, 1]) {
    const g = document.createElementNS(ns, "line");
    g.setAttribute("x1", L); g.setAttribute("x2", W); g.setAttribute("y1", y(vmax * f / 1.1)); g.setAttribute("y2", y(vmax * f / 1.1));
    g.setAttribute("class", "grid");
    svg.append(g);
    const label = document.createElementNS(ns, "text");
    label.setAttribute("x", 2); label.setAttribute("y", y(vmax * f / 1.1) + 3); label.setAttribute("class", "axis");
    label.textContent = (vmax * f / 1.1).toFixed(vmax > 10 ? 0 : 1) + unit;
    svg.append(label);
  }
  if (pts.length < 20) {
    // Few points (a fleet that just started): dots, so that one point shows.
    for (const p of pts) {
      const c = document.createElementNS(ns, "circle");
      c.setAttribute("cx", x(p.t).toFixed(1)); c.setAttribute("cy", y(p.v).toFixed(1)); c.setAttribute("r", "2.5");
      c.setAttribute("class", "dot");
      svg.append(c);
    }
  }
  const path = document.createElementNS(ns, "path");
  path.setAttribute("d", pts.map((p, i) => (i ? "L" : "M") + x(p.t).toFixed(1) + "," + y(p.v).toFixed(1)).join(""));
  path.setAttribute("class", "line");
  svg.append(path);
  svg.dataset.points = String(pts.length);
}

function seriesPoints(series, scale) {
  // The sum over series (clusters) at each instant.
  const byT = new Map();
  for (const s of series) for (const p of s.points) {
    if (p.value === null) continue;
    const t = new Date(p.t).getTime();
    byT.set(t, (byT.get(t) || 0) + p.value * scale);
  }
  return [...byT.entries()].sort((a, b) => a[0] - b[0]).map(([t, v]) => ({ t, v }));
}

async function refresh() {
  const status = document.getElementById("status");
  try {
    const [health, drain, xids, util, power] = await Promise.all([
      api("/api/v1/health"),
      api("/api/v1/drain?limit=200"),
      api("/api/v1/event_log?kinds=xid&since=1h&limit=100"),
      api("/api/v1/series?metric=gpu_util&agg=avg&since=30m&step=10s"),
      api("/api/v1/power?since=30m&step=10s"),
    ]);
    renderStates(health);
    renderDrain(drain);
    renderXids(xids);
    drawLine(document.getElementById("chart-util"), seriesPoints(util, 1), "%");
    drawLine(document.getElementById("chart-power"), seriesPoints(power.series || [], 0.001), " kW");
    status.textContent = "updated " + new Date().toLocaleTimeString();
    status.className = "status";
    document.body.dataset.loaded = "true";
  } catch (e) {
    if (e instanceof Unauthorized) document.getElementById("token-form").hidden = false;
    status.textContent = e.message;
    status.className = "status error";
  }
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    sessionStorage.setItem("gpufleet-token", document.getElementById("token").value.trim());
    document.getElementById("token-form").hidden = true;
    refresh();
  });
  refresh();
  setInterval(refresh, refreshMs);
});
