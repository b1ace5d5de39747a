// The status page: asks the daemon for getOverview every few seconds (?refresh=N, default 5)
// and redraws. A token, when the daemon wants one, is kept for this tab only.
"use strict";

const params = new URLSearchParams(location.search);
const refreshSeconds = Math.min(Math.max(Number(params.get("refresh")) || 5, 1), 300);
let timer = null;

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const c of cells) tr.appendChild(c instanceof Node ? c : el("td", c));
  return tr;
}

function fill(id, rows) {
  const body = document.querySelector("#" + id + " tbody");
  body.replaceChildren(...rows);
  if (rows.length === 0) {
    const cols = document.querySelectorAll("#" + id + " thead th").length;
    const td = el("td", "none", "muted");
    td.colSpan = cols;
    body.appendChild(row([td]));
  }
}

function ago(iso) {
  const secs = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (secs < 60) return secs + " s ago";
  if (secs < 3600) return Math.round(secs / 60) + " min ago";
  if (secs < 86400) return Math.round(secs / 3600) + " h ago";
  return Math.round(secs / 86400) + " d ago";
}

function duration(secs) {
  if (secs === null || secs === undefined) return "";
  if (secs < 120) return secs + " s";
  if (secs < 7200) return Math.round(secs / 60) + " min";
  return Math.round(secs / 3600) + " h";
}

// The lifecycle's order; states a newer daemon adds come after.
const ORDER = ["PENDING", "IN_PROGRESS", "COMPLETED", "PARTIAL_SUCCESS", "FAILED", "TIMEOUT", "CANCELLED", "REJECTED"];

function render(o) {
  const known = Object.keys(o.requests.provision);
  const states = ORDER.filter((s) => known.includes(s)).concat(known.filter((s) => !ORDER.includes(s)));
  const head = document.querySelector("#states thead tr");
  head.replaceChildren(el("th", "kind"), ...states.map((s) => el("th", s)));
  fill("states", Object.entries(o.requests).map(([kind, by]) =>
    row([el("td", kind), ...states.map((s) => el("td", by[s], by[s] > 0 ? "state " + s : "muted"))])));

  const b = o.backlog;
  document.getElementById("backlog-total").textContent = b.pending + b.inProgress;
  document.getElementById("backlog-detail").textContent =
    b.pending + " pending, " + b.inProgress + " in progress" +
    (b.oldestAgeSecs !== null && b.oldestAgeSecs !== undefined ? "; oldest " + duration(b.oldestAgeSecs) : "");

  const held = o.held.reduce((n, h) => n + h.machines, 0);
  const cost = o.held.reduce((n, h) => n + (h.hourlyUsd || 0), 0);
  document.getElementById("held-total").textContent = held;
  document.getElementById("held-cost").textContent = held > 0 ? "$" + cost.toFixed(2) + " per hour" : "";
  fill("held", o.held.map((h) => {
    const tr = row([h.templateId, h.provider, h.instanceType, h.machines,
      h.hourlyUsd === null || h.hourlyUsd === undefined ? "" : "$" + h.hourlyUsd.toFixed(3)]);
    tr.dataset.template = h.templateId;
    tr.dataset.machines = h.machines;
    return tr;
  }));

  const healthy = o.providers.filter((p) => p.healthy).length;
  document.getElementById("providers-healthy").textContent = healthy + " / " + o.providers.length;
  document.getElementById("providers-detail").textContent =
    o.providers.filter((p) => !p.healthy).map((p) => p.name + ": " + p.message).join("; ");
  fill("providers", o.providers.map((p) => {
    const breakers = el("td");
    for (const br of p.breakers) {
      breakers.appendChild(el("span", br.service + " " + br.state.toLowerCase() + " ", br.state.toLowerCase()));
    }
    if (p.breakers.length === 0) breakers.textContent = "closed";
    return row([p.name, el("td", p.healthy ? "healthy" : "unhealthy", p.healthy ? "ok" : "bad"), breakers,
      p.calls, p.failures, p.averageLatencyMs === null ? "" : p.averageLatencyMs + " ms"]);
  }));

  fill("recent", o.recent.map((r) => {
    const tr = row([el("td", r.requestId), r.kind, el("td", r.status, "state " + r.status), r.templateId || "",
      r.kind === "provision" ? r.machinesHeld + " / " + r.machineCount : r.machineCount, ago(r.updatedAt)]);
    tr.dataset.requestId = r.requestId;
    tr.dataset.status = r.status;
    return tr;
  }));
  document.getElementById("failed-total").textContent = o.failures.length;
  fill("failures", o.failures.map((r) =>
    row([r.requestId, el("td", r.status, "state " + r.status), ago(r.updatedAt), el("td", r.errorMessage || "", "why")])));

  const venues = document.getElementById("venues-section");
  venues.hidden = !o.venues;
  if (o.venues) {
    fill("venues", o.venues.map((v) => row([v.venue, v.provider, v.zone || "", v.catalog_spec,
      v.available_today === null ? "no limit" : v.available_today])));
  }
  const live = document.getElementById("live");
  live.textContent = "updated " + new Date(o.generatedAt).toLocaleTimeString() + ", every " + refreshSeconds + " s";
  live.className = "live";
  document.body.dataset.updated = o.generatedAt;
}

async function refresh() {
  const headers = { "content-type": "application/json" };
  const token = sessionStorage.getItem("ohf-token");
  if (token) headers.authorization = "Bearer " + token;
  try {
    const answer = await fetch("/rpc", { method: "POST", headers, body: JSON.stringify({ method: "getOverview" }) });
    const doc = await answer.json();
    if (answer.status === 401 || answer.status === 403) {
      sessionStorage.removeItem("ohf-token");
      document.getElementById("main").hidden = true;
      document.getElementById("login").hidden = false;
      document.getElementById("login-error").textContent = token ? doc.error.message : "";
      document.getElementById("live").textContent = "needs a token";
      return;
    }
    if (!answer.ok) throw new Error(doc.error ? doc.error.message : "answer " + answer.status);
    document.getElementById("login").hidden = true;
    document.getElementById("main").hidden = false;
    render(doc.result);
  } catch (e) {
    const live = document.getElementById("live");
    live.textContent = "not updated: " + e.message;
    live.className = "live stale";
  }
  timer = setTimeout(refresh, refreshSeconds * 1000);
}

document.getElementById("login").addEventListener("submit", (ev) => {
  ev.preventDefault();
  sessionStorage.setItem("ohf-token", document.getElementById("token").value);
  clearTimeout(timer);
  refresh();
});

refresh();
