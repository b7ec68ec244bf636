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
  // the page scripts loaded after this one (alerts.js) share these two
  window.amoskys = Object.freeze({ post, say });

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

  // The exec stream (Processes page, a host's page): new exec and exit events are added on top as they
  // arrive, read from /api/v1/processes/execs at most once a second with the table's source (data-source)
  // or the page's filters. The template marks the table live (data-live-execs) on its newest page only,
  // and names its cells in order (data-columns); a row is built as the template builds it.
  const execTable = document.querySelector("table[data-live-execs]");
  let execsPending = false;
  function node(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function link(href, cls, text) {
    const a = node("a", cls, text);
    a.href = href;
    return a;
  }
  function stamp(ns) {  // as the `ts` filter: UTC text, the instant in `datetime` (tables.js localizes it)
    const t = node("time"), iso = new Date(Number(ns) / 1e6).toISOString();
    t.setAttribute("datetime", iso);
    t.title = iso;
    t.textContent = iso.slice(0, 19).replace("T", " ");
    return t;
  }
  function cmdline(argv, cut = 60) {  // as _links.html's cmdline macro: whole when short, else an expander
    const text = argv.join(" ");
    const code = node("code", text.length > cut ? "full" : "cmd");
    argv.forEach((a, i) => { if (i) code.append(" "); code.append(node("span", "tok", a)); });
    if (text.length <= cut) return code;
    const details = node("details", "cmd"), summary = node("summary");
    summary.append(node("code", "", text.slice(0, cut) + "…"));
    details.append(summary, code);
    return details;
  }
  function source(e) {
    const out = [link(`/hosts/${encodeURIComponent(e.source)}`, "tok host-link", e.source)];
    if (e.origin && e.origin !== e.source) out.push(" ", node("span", "muted small origin", `via ${e.origin}`));
    if (e.synthetic) {
      const badge = node("span", "badge synthetic", "SYNTHETIC");
      badge.title = "published by a loadgen identity: made up, not observed";
      out.push(" ", badge);
    }
    return out;
  }
  const EXEC_CELLS = {  // column: [cell class, its content]
    time: ["", (e) => [stamp(e.ts_ns)]],
    source: ["", source],
    kind: ["", (e) => [link(`/events/${e.store_seq}`, "", String(e.body.kind || "").toLowerCase())]],
    pid: ["num", (e) => [String(e.body.pid ?? "")]],
    ppid: ["num", (e) => [String(e.body.ppid ?? "")]],
    user: ["", (e) => [e.body.user || ""]],
    exe: ["", (e) => [node("code", "", e.body.exe || "")]],
    argv: ["", (e) => [cmdline(e.body.argv || [])]],
    exit: ["num", (e) => [e.body.exit_code === undefined ? "" : String(e.body.exit_code)]],
  };
  function execRow(e, columns) {
    const tr = node("tr", "fresh");
    tr.dataset.seq = e.store_seq;
    e.body = e.body || {};
    for (const col of columns) {
      const [cls, content] = EXEC_CELLS[col];
      const td = node("td", cls);
      td.append(...content(e));
      tr.append(td);
    }
    return tr;
  }
  function newExecs() {
    if (!execTable || execsPending) return;
    execsPending = true;
    setTimeout(async () => {
      try {
        const q = new URLSearchParams(location.search), params = new URLSearchParams({ limit: "50" });
        for (const k of ["source", "q"]) if (q.get(k)) params.set(k, q.get(k));
        if (execTable.dataset.source) params.set("source", execTable.dataset.source);
        const r = await fetch(`/api/v1/processes/execs?${params}`, { credentials: "same-origin" });
        if (!r.ok) return;
        const body = execTable.querySelector("tbody");
        const shown = new Set(Array.from(body.querySelectorAll("tr[data-seq]"), (tr) => tr.dataset.seq));
        const fresh = (await r.json()).items.filter((e) => !shown.has(String(e.store_seq)));
        if (!fresh.length) return;
        const columns = execTable.dataset.columns.split(" ");
        body.querySelectorAll("tr:not([data-seq])").forEach((tr) => tr.remove());  // "no exec events yet"
        body.prepend(...fresh.map((e) => execRow(e, columns)));
        while (body.children.length > 200) body.lastElementChild.remove();
        const live = document.getElementById("exec-live");
        if (live) live.textContent = `live: ${fresh.length} new`;
      } catch (_) { /* the next process event tries again */ }
      finally { execsPending = false; }
    }, 1000);
  }

  // Live updates (Server-Sent Events): events, the events/s tick, and the page's numbers (`status`
  // events, shown by status.js)
  const STATUS = { "/": "overview", "/collectors": "collectors", "/agents": "agents" };
  if (page === "/" || execTable || STATUS[page]) {
    // The overview's totals leave synthetic (loadgen) events out unless the page counts them (?synthetic=1).
    const cards = document.querySelector(".cards[data-synthetic]");
    const withSynthetic = !!cards && cards.dataset.synthetic === "1";
    const params = new URLSearchParams();
    if (execTable) params.set("kinds", "process");
    else if (page !== "/") params.set("kinds", "none");  // numbers only: no event has kind "none"
    if (STATUS[page]) params.set("status", STATUS[page]);
    if (withSynthetic) params.set("synthetic", "1");
    const es = new EventSource(`/api/v1/stream?${params}`);
    es.addEventListener("open", () => { document.body.dataset.stream = "open"; });
    es.addEventListener("status", (ev) => {
      document.dispatchEvent(new CustomEvent("amoskys:status", { detail: JSON.parse(ev.data) }));
    });
    let alertsPending = false;
    es.addEventListener("tick", (ev) => {
      const t = JSON.parse(ev.data);
      const perSecond = Math.round((t.events_per_second + (withSynthetic ? t.synthetic_events_per_second || 0 : 0)) * 10) / 10;
      const eps = document.getElementById("eps");
      if (eps) eps.textContent = perSecond;
    });
    es.addEventListener("events", (ev) => {
      const rows = document.getElementById("rows");
      const list = JSON.parse(ev.data);
      const counted = withSynthetic ? list.length : list.filter((e) => !e.synthetic).length;
      if (rows) rows.textContent = (parseInt(rows.textContent.replace(/\D/g, ""), 10) + counted).toLocaleString("en");
      if (list.some((e) => e.kind === "process")) newExecs();
      const open = document.getElementById("alerts-open");
      if (open && !alertsPending && list.some((e) => e.kind === "alert")) {
        alertsPending = true;  // one count read a second at most, whatever the alert rate
        setTimeout(async () => {
          try {
            const r = await fetch(`/api/v1/alerts/open${withSynthetic ? "?synthetic=1" : ""}`, { credentials: "same-origin" });
            if (r.ok) open.querySelector("a").textContent = (await r.json()).open.toLocaleString("en");
          } catch (_) { /* the next alert tries again */ }
          alertsPending = false;
        }, 1000);
      }
    });
  }
})();
