// AMOSKYS dashboard: small progressive enhancements. No inline script anywhere (the CSP forbids it).
"use strict";
(function () {
  const csrf = document.body.dataset.csrf || "";
  const page = document.body.dataset.page || "";

  async function post(url, body) {
    const resp = await fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify(body || {}),
    });
    const data = await resp.json().catch(() => ({}));
    if (!resp.ok) throw new Error(data.error || resp.statusText);
    return data;
  }

  function say(text, bad) {
    const el = document.getElementById("action-result");
    if (el) { el.textContent = text; el.className = "small " + (bad ? "bad" : "muted"); }
  }

  function points(values, width, height) {
    const top = Math.max(1, ...values);
    const step = width / Math.max(1, values.length - 1);
    return values.map((v, i) => `${(i * step).toFixed(1)},${(height - (v / top) * (height - 4) - 2).toFixed(1)}`).join(" ");
  }

  // Collector start / stop / restart (admins): only the actions its state allows are offered
  function collectorButtons(cell, name, actions) {
    cell.replaceChildren();
    for (const a of actions) {
      const b = document.createElement("button");
      b.type = "button"; b.dataset.action = a; b.dataset.collector = name; b.textContent = a;
      cell.append(b);
    }
    if (!actions.length) {
      const none = document.createElement("span");
      none.className = "muted small"; none.textContent = "none: fix what its state names";
      cell.append(none);
    }
  }
  function showCollector(s) {
    const row = document.querySelector(`tr[data-name="${CSS.escape(s.name)}"]`);
    const cell = row && row.querySelector(".state");
    if (cell) { cell.textContent = s.state_text; cell.className = `state state-${s.state}`; }
    const actions = row && row.querySelector(".actions");
    if (actions) collectorButtons(actions, s.name, s.actions || []);
  }
  const collectorTable = document.getElementById("collectors");
  if (collectorTable) collectorTable.addEventListener("click", async (ev) => {
    const b = ev.target.closest("button[data-action]");
    if (!b) return;
    const name = b.dataset.collector, action = b.dataset.action;
    try {
      const s = await post(`/api/v1/collectors/${encodeURIComponent(name)}/${action}`);
      showCollector(s);
      say(`${name}: ${s.state_text}`);
    } catch (e) {
      say(`${name}: ${e.message}`, true);
      try {  // refused: show the state it is really in, and what it allows
        const all = await (await fetch("/api/v1/collectors", { credentials: "same-origin" })).json();
        (all.items || []).filter((c) => c.name === name).forEach(showCollector);
      } catch (_) { /* the message above says enough */ }
    }
  });

  // Agent revocation (admins)
  document.querySelectorAll("button[data-revoke]").forEach((b) => b.addEventListener("click", async () => {
    if (!confirm(`Revoke agent ${b.dataset.revoke}? It will be refused within a second.`)) return;
    try { await post(`/api/v1/agents/${encodeURIComponent(b.dataset.revoke)}/revoke`); location.reload(); }
    catch (e) { say(e.message, true); }
  }));

  // Users (admins)
  const addUser = document.getElementById("add-user");
  if (addUser) addUser.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = new FormData(addUser);
    try { await post("/api/v1/users", Object.fromEntries(f.entries())); location.reload(); }
    catch (e) { say(e.message, true); }
  });
  document.querySelectorAll("button[data-delete-user]").forEach((b) => b.addEventListener("click", async () => {
    if (!confirm(`Remove user ${b.dataset.deleteUser}?`)) return;
    try { await post(`/api/v1/users/${encodeURIComponent(b.dataset.deleteUser)}/delete`); location.reload(); }
    catch (e) { say(e.message, true); }
  }));
  const tokenButton = document.getElementById("new-token");
  if (tokenButton) tokenButton.addEventListener("click", async () => {
    try { document.getElementById("token-out").textContent = (await post("/api/v1/tokens", { days: 90 })).token; }
    catch (e) { say(e.message, true); }
  });

  // SNMP rate charts
  document.querySelectorAll("svg[data-rates]").forEach(async (svg) => {
    try {
      const data = await (await fetch(svg.dataset.rates, { credentials: "same-origin" })).json();
      const ins = data.points.map((p) => p.in_bps), outs = data.points.map((p) => p.out_bps);
      svg.querySelector(".in").setAttribute("points", points(ins, 600, 80));
      svg.querySelector(".out").setAttribute("points", points(outs, 600, 80));
    } catch (e) { /* the table still shows the counters */ }
  });

  // Live updates (Server-Sent Events)
  if (page === "/" || page === "/processes") {
    const kinds = page === "/processes" ? "process" : "";
    const es = new EventSource(`/api/v1/stream${kinds ? "?kinds=" + kinds : ""}`);
    const chartEl = document.getElementById("rate-chart");
    const rates = chartEl ? JSON.parse(chartEl.dataset.series || "[]") : [];
    // The overview's totals leave synthetic (loadgen) events out unless the page counts them (?synthetic=1).
    const cards = document.querySelector(".cards[data-synthetic]");
    const withSynthetic = !!cards && cards.dataset.synthetic === "1";
    es.addEventListener("tick", (ev) => {
      const t = JSON.parse(ev.data);
      const perSecond = Math.round((t.events_per_second + (withSynthetic ? t.synthetic_events_per_second || 0 : 0)) * 10) / 10;
      const eps = document.getElementById("eps");
      if (eps) eps.textContent = perSecond;
      const chart = document.querySelector("#rate-chart polyline");
      if (chart) { rates.push(perSecond); if (rates.length > 300) rates.shift(); chart.setAttribute("points", points(rates, 600, 80)); }
    });
    es.addEventListener("events", (ev) => {
      const rows = document.getElementById("rows");
      const list = JSON.parse(ev.data);
      const counted = withSynthetic ? list.length : list.filter((e) => !e.synthetic).length;
      if (rows) rows.textContent = (parseInt(rows.textContent.replace(/\D/g, ""), 10) + counted).toLocaleString("en");
      const live = document.getElementById("exec-live");
      if (live) live.textContent = `live: ${list.length} new process events — reload to see them`;
    });
  }
})();
