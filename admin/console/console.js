// mmserver operator console: polls the control plane's JSON every few seconds and renders it.
// Every value from the server is written with textContent, never as HTML: player ids, errors
// and webhook events come from clients and must not become markup.
"use strict";

const TOKEN_KEY = "mmserver.adminToken";  // sessionStorage: gone when the tab closes
const REFRESH_MS = 2000;
let timer = null;

const $ = (id) => document.getElementById(id);

function token() { return sessionStorage.getItem(TOKEN_KEY); }

class Unauthorized extends Error {}

// One JSON call to /admin/*, with the token as the bearer token (never in the URL).
async function call(method, path, body) {
  const headers = { "Authorization": "Bearer " + token() };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method, headers, cache: "no-store", credentials: "omit",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401) throw new Unauthorized("the token was refused");
  let data = null;
  try { data = await response.json(); } catch (e) { data = null; }
  if (!response.ok) {
    const why = data && (data.description || data.title);
    const error = new Error(`${response.status}: ${why || response.statusText}`);
    error.status = response.status;
    throw error;
  }
  return data;
}

function cell(row, value, className) {
  const td = document.createElement("td");
  td.textContent = value === null || value === undefined ? "–" : String(value);
  if (className) td.className = className;
  row.appendChild(td);
  return td;
}

function fillRows(tbody, rows) {
  tbody.replaceChildren(...rows);
}

function seconds(value) {
  if (value === null || value === undefined) return "–";
  if (value < 60) return value.toFixed(1) + " s";
  if (value < 3600) return (value / 60).toFixed(1) + " min";
  return (value / 3600).toFixed(1) + " h";
}

function clock(epochSeconds) {
  return epochSeconds ? new Date(epochSeconds * 1000).toLocaleString() : "–";
}

function renderStatus(status) {
  $("replica-line").textContent = `replica ${status.replica} · v${status.version}`;
  const state = $("state");
  state.textContent = status.state + (status.reason ? ` (${status.reason})` : "");
  state.className = status.state === "running" ? "good" : "warn";
  const readiness = $("readiness");
  readiness.textContent = status.readiness;
  readiness.className = status.ready ? "good" : "bad";
  const workers = status.workers || {};
  const parts = [];
  for (const [name, worker] of Object.entries(workers)) {
    if (!worker) continue;
    let text = `${name}: ${worker.alive ? "alive" : "DEAD"}`;
    if (name === "subscriber") text += worker.connected ? ", connected" : ", disconnected";
    if (name === "http") text += `, ${worker.in_flight} in flight, ${worker.long_polls} long-polls`;
    if (name === "scheduler" && worker.stalled && worker.stalled.length) text += `, stalled: ${worker.stalled.join(" ")}`;
    parts.push(text);
  }
  $("workers").textContent = parts.join(" · ");
  $("uptime").textContent = seconds(status.uptime_s);
  $("drain").disabled = status.state !== "running";
  $("undrain").disabled = status.state !== "draining";
  $("shutdown").disabled = status.state === "stopping";

  const now = Date.now() / 1000;
  fillRows($("replicas").tBodies[0], (status.replicas || []).map((replica) => {
    const row = document.createElement("tr");
    row.dataset.replica = replica.id;
    cell(row, replica.id);
    cell(row, replica.host);
    cell(row, replica.pid, "num");
    cell(row, replica.version);
    cell(row, replica.state, replica.state === "running" ? "good" : "warn");
    cell(row, replica.last_tick ? seconds(Math.max(0, now - replica.last_tick)) + " ago" : "never", "num");
    cell(row, clock(replica.started_at));
    return row;
  }));

  fillRows($("queues").tBodies[0], Object.entries(status.queues || {}).map(([mode, queue]) => {
    const row = document.createElement("tr");
    row.dataset.mode = mode;
    cell(row, mode);
    cell(row, queue.queued, "num queued");
    cell(row, seconds(queue.oldest_wait_s), "num oldest");
    cell(row, queue.matched, "num matched");
    cell(row, queue.assigned, "num assigned");
    cell(row, queue.backfills_open, "num backfills");
    const blocked = Object.entries(queue.blocked_by || {}).map(([rule, count]) => `${rule}: ${count}`);
    cell(row, blocked.length ? blocked.join(", ") : "–", "blocked");
    return row;
  }));

  for (const name of ["sessions", "servers"]) {
    fillRows($(name).tBodies[0], Object.entries(status[name] || {}).map(([state, count]) => {
      const row = document.createElement("tr");
      row.dataset.state = state;
      const th = document.createElement("th");
      th.textContent = state;
      row.appendChild(th);
      cell(row, count, "num");
      return row;
    }));
  }

  fillRows($("outcomes").tBodies[0], Object.entries(status.outcomes || {}).map(([mode, counts]) => {
    const row = document.createElement("tr");
    row.dataset.mode = mode;
    cell(row, mode);
    for (const key of ["created", "matched", "assigned", "finished", "cancelled", "expired"]) {
      cell(row, counts[key], "num " + key);
    }
    return row;
  }));

  const error = $("error");
  error.hidden = !status.store_error;
  error.textContent = status.store_error ? `Redis: ${status.store_error} (figures ${seconds(status.stats_age_s)} old)` : "";
}

function renderDeadLetters(page) {
  const tbody = $("dead").tBodies[0];
  if (page === null) {
    $("dead-summary").textContent = "Webhooks are not configured on this deployment.";
    fillRows(tbody, []);
    return;
  }
  $("dead-summary").textContent = `${page.total} dead letter(s)` + (page.total > page.dead_letters.length ? `, the first ${page.dead_letters.length} shown` : "");
  fillRows(tbody, page.dead_letters.map((letter) => {
    const row = document.createElement("tr");
    cell(row, letter.id);
    const event = letter.event || {};
    cell(row, event.type || JSON.stringify(event));
    cell(row, letter.attempts, "num");
    cell(row, letter.last_error);
    cell(row, clock(letter.dead_at));
    return row;
  }));
}

const MATCH_PAGE = 50;

function renderMatches(page) {
  const shown = page.matches.length;
  $("matches-summary").textContent = `${page.total} running` + (page.total > shown ? `, ${shown} shown` : "");
  const now = Date.now() / 1000;
  fillRows($("matches").tBodies[0], page.matches.map((match) => {
    const row = document.createElement("tr");
    row.dataset.match = match.match_id;
    cell(row, match.match_id);
    cell(row, match.mode);
    cell(row, match.region);
    cell(row, match.server);
    const players = (match.teams || []).map((team) => team.players.map((p) => p.player_id).join(", "));
    cell(row, players.join("  vs  "));
    cell(row, match.created_at ? seconds(Math.max(0, now - match.created_at)) : null, "num");
    const action = document.createElement("td");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "finish danger";
    button.dataset.id = match.match_id;
    button.textContent = "Finish";
    action.appendChild(button);
    row.appendChild(action);
    return row;
  }));
}

function finishMatch(id) {
  return act(`Finish match ${id}? Its server is freed and its players' tickets end.`, "POST",
             `/admin/matches/${encodeURIComponent(id)}/finish`);
}

// One refresh at a time: while the control plane is slow (a frozen Redis holds each call up to
// its 5 s timeout), the timer's next turns are skipped instead of stacking up calls that would
// hold every control-plane worker.
let refreshing = null;

function refresh() {
  if (!refreshing) refreshing = refreshNow().finally(() => { refreshing = null; });
  return refreshing;
}

async function refreshNow() {
  try {
    renderStatus(await call("GET", "/admin/status"));
    renderMatches(await call("GET", `/admin/matches?limit=${MATCH_PAGE}`));
    let dead = null;
    try {
      dead = await call("GET", "/admin/webhooks/dead?limit=20");
    } catch (e) {
      if (e.status !== 404) throw e;  // 404: no [webhooks] table
    }
    renderDeadLetters(dead);
    $("refresh-line").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (e) {
    if (e instanceof Unauthorized) { logout("The token was refused."); return; }
    $("error").hidden = false;
    // An answer with a status came from the control plane (a 503 while Redis is away): say
    // so, rather than that the control plane is out of reach.
    $("error").textContent = (e.status ? "The control plane answered " : "Cannot reach the control plane: ") + e.message;
  }
}

function showConsole(visible) {
  $("login").hidden = visible;
  $("console").hidden = !visible;
  $("logout").hidden = !visible;
}

function login(value) {
  sessionStorage.setItem(TOKEN_KEY, value);
  showConsole(true);
  refresh();
  clearInterval(timer);
  timer = setInterval(refresh, REFRESH_MS);
}

function logout(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  clearInterval(timer);
  showConsole(false);
  $("replica-line").textContent = "";
  $("login-error").hidden = !message;
  $("login-error").textContent = message || "";
}

// An action: asks first, then calls, shows the answer and refreshes at once.
async function act(question, method, path, body) {
  if (!window.confirm(question)) return null;
  const result = $("action-result");
  try {
    const answer = await call(method, path, body);
    result.className = "good";
    result.textContent = `${method} ${path}: ` + JSON.stringify(answer);
    if (refreshing) await refreshing;  // begun before the action: its figures may predate it
    await refresh();
    return answer;
  } catch (e) {
    if (e instanceof Unauthorized) { logout("The token was refused."); return null; }
    result.className = "error";
    result.textContent = `${method} ${path} failed: ${e.message}`;
    return null;
  }
}

async function lookup(kind, id) {
  const box = $("lookup-result");
  box.hidden = false;
  $("finish-match").hidden = true;
  $("release-player").hidden = true;
  try {
    const data = await call("GET", `/admin/${kind}/${encodeURIComponent(id)}`);
    $("lookup-json").textContent = JSON.stringify(data, null, 2);
    // Only a running match can be finished (a loading one ends by releasing its players).
    const matchId = kind === "matches" ? (data.state === "assigned" ? id : null)
      : data.ticket && data.ticket.status === "assigned" ? data.ticket.assignment.match_id : null;
    if (matchId) {
      $("finish-match").hidden = false;
      $("finish-match").dataset.id = matchId;
      $("finish-match-id").textContent = matchId;
    }
    if (kind === "players") {
      $("release-player").hidden = false;
      $("release-player").dataset.id = id;
      $("release-player-id").textContent = id;
    }
  } catch (e) {
    if (e instanceof Unauthorized) { logout("The token was refused."); return; }
    $("lookup-json").textContent = e.message;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = $("token").value.trim();
    $("token").value = "";
    if (value) login(value);
  });
  $("logout").addEventListener("click", () => logout(""));
  $("drain").addEventListener("click", () =>
    act("Drain this replica? It stops taking new tickets and reports not-ready.", "POST", "/admin/drain"));
  $("undrain").addEventListener("click", () =>
    act("Undrain this replica? It takes new tickets again.", "POST", "/admin/undrain"));
  $("shutdown").addEventListener("click", () => {
    const reason = $("shutdown-reason").value.trim();
    if (!reason) { $("action-result").className = "error"; $("action-result").textContent = "Give a reason for the shutdown."; return; }
    act(`Shut this replica down (exit 1, its supervisor restarts it)?\nReason: ${reason}`,
        "POST", "/admin/shutdown", { reason });
  });
  $("lookup-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const id = $("lookup-id").value.trim();
    if (id) lookup($("lookup-kind").value, id);
  });
  $("finish-match").addEventListener("click", async () => {
    const id = $("finish-match").dataset.id;
    if (await finishMatch(id)) lookup("matches", id);
  });
  // One listener for the rows' buttons: the rows are rebuilt at every refresh.
  $("matches").tBodies[0].addEventListener("click", (event) => {
    const button = event.target.closest("button.finish");
    if (button) finishMatch(button.dataset.id);
  });
  $("release-player").addEventListener("click", async () => {
    const id = $("release-player").dataset.id;
    if (await act(`Release player ${id}? Its live ticket is cancelled or its match left.`, "DELETE",
                  `/admin/players/${encodeURIComponent(id)}`)) {
      lookup("players", id);
    }
  });
  if (token()) login(token()); else showConsole(false);
});
