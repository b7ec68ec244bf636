// AMOSKYS live numbers: the `status` events of the page's live stream (see app.js) carry what the page's
// /api/v1 twin answers (the Overview, the collectors, the agents, the open alerts); this puts each number
// where the page shows it. Cells say what they show with data-live="<key>"; rows name their item with
// data-name. No inline script (the CSP forbids it).
"use strict";
(function () {
  const num = (v) => (v === null || v === undefined ? "—" : Math.round(Number(v)).toLocaleString("en"));
  const fixed = (v, d) => (v === null || v === undefined ? "—" : Number(v).toFixed(d));
  function bytes(n) {
    if (n === null || n === undefined) return "—";
    let v = Number(n);
    for (const unit of ["B", "KiB", "MiB", "GiB", "TiB"]) {
      if (v < 1024 || unit === "TiB") {
        return unit === "B" ? `${Math.trunc(v)} B` : `${v.toLocaleString("en", { minimumFractionDigits: 1, maximumFractionDigits: 1 })} ${unit}`;
      }
      v /= 1024;
    }
    return `${n} B`;
  }
  function ts(ns) {
    if (!ns) return "—";
    return new Date(Number(ns) / 1e6).toISOString().slice(0, 19).replace("T", " ");
  }
  function set(el, text) { if (el && el.textContent !== text) el.textContent = text; }
  function li(text, cls) {
    const e = document.createElement("li");
    e.textContent = text;
    if (cls) e.className = cls;
    return e;
  }

  // one collector's cells, wherever a table lists collectors (the Collectors page, the Overview)
  const COLLECTOR = {
    state: (c, td) => { set(td, c.state_text); td.classList.forEach((k) => k.startsWith("state-") && td.classList.remove(k)); td.classList.add(`state-${c.state}`); },
    mode: (c, td) => set(td, c.mode),
    events: (c, td) => set(td, num(c.events)),
    errors: (c, td) => set(td, num(c.errors)),
    restarts: (c, td) => set(td, num(c.restarts)),
    busy: (c, td) => set(td, fixed(c.busy_seconds, 2)),
    last_error: (c, td) => set(td, c.last_error ? `${c.last_error} (${ts(c.last_error_ns)})` : ""),
  };
  function agentState(a) {
    if (a.revoked_ns) return `revoked ${ts(a.revoked_ns)}`;
    if (a.silent) return "silent";
    return a.silent === null || a.silent === undefined ? "no heartbeat yet" : "active";
  }
  const AGENT = {
    last_seen: (a, td) => set(td, ts(a.last_seen_ns)),
    events_rate: (a, td) => set(td, fixed(a.events_per_second, 1)),
    outbox_lag: (a, td) => set(td, a.outbox_lag_events === null || a.outbox_lag_events === undefined ? "—"
      : `${num(a.outbox_lag_events)} ev / ${fixed(a.outbox_lag_seconds, 0)} s`),
    version: (a, td) => set(td, a.version || "—"),
    os: (a, td) => set(td, a.os || "—"),
    addresses: (a, td) => set(td, (a.addresses || []).join(", ") || "—"),
    state: (a, td) => {
      const text = agentState(a);
      if (td.textContent.trim() === text) return;
      td.replaceChildren();
      if (a.silent && !a.revoked_ns) {
        const b = document.createElement("span");
        b.className = "badge silent"; b.textContent = "silent";
        b.title = `no heartbeat for ${num(a.silent_for_seconds)} s`;
        td.append(b);
      } else td.textContent = text;
    },
  };
  function rows(items, scope, cells, within = "") {
    for (const item of items || []) {
      const row = scope.querySelector(`tr${within}[data-name="${CSS.escape(item.name)}"]`);
      if (!row) continue;
      row.querySelectorAll("[data-live]").forEach((td) => {
        const show = cells[td.dataset.live];
        if (show) show(item, td);
      });
    }
  }

  function overview(o) {
    const health = document.getElementById("health");
    if (health) { set(health, o.health.ready ? "ready" : "not ready"); health.className = `big ${o.health.ready ? "ok" : "bad"}`; }
    const lag = document.querySelector("#loop-lag [data-live=lag]");
    if (lag && o.loop_lag && o.loop_lag.p99_seconds !== null && o.loop_lag.p99_seconds !== undefined) {
      set(lag, `${(o.loop_lag.p99_seconds * 1000).toFixed(1)} ms (max ${(o.loop_lag.max_seconds * 1000).toFixed(1)} ms)`);
    }
    const open = document.getElementById("alerts-open");
    if (open && o.alerts) {
      set(open.querySelector("a") || open, num(o.alerts.open));
      open.className = `big ${o.alerts.open ? "bad" : "ok"}`;
      const levels = document.getElementById("alerts-levels");
      if (levels) {
        const text = Object.entries(o.alerts.by_level || {}).map(([lv, n]) => `${num(n)} ${lv}`).join(" ");
        if (levels.dataset.text !== text) {
          levels.dataset.text = text;
          levels.replaceChildren(...Object.entries(o.alerts.by_level || {}).map(([lv, n]) => {
            const b = document.createElement("span");
            b.className = `badge level level-${lv}`; b.textContent = `${num(n)} ${lv}`;
            return b;
          }));
        }
      }
    }
    set(document.getElementById("rows"), num(o.store.rows));
    set(document.getElementById("store-bytes"), bytes(o.store.db_bytes + o.store.wal_bytes));
    set(document.getElementById("wal-bytes"), bytes(o.store.wal_bytes));
    set(document.getElementById("space-state"), o.store.space_state);
    const sinks = document.getElementById("sinks");
    if (sinks && o.sinks.length) {
      sinks.replaceChildren(...o.sinks.map((s) => li(`${s.name}: lag ${num(s.lag_events)} events${s.enabled ? "" : " (disabled)"}`)));
    }
    const losses = document.getElementById("store-losses");
    if (losses) {
      losses.replaceChildren(...Object.entries(o.losses.store_by_reason).map(([r, n]) => li(`store ${r}: ${num(n)}`)));
    }
    const reports = document.getElementById("loss-reports");
    if (reports) {
      reports.replaceChildren(...o.losses.recent_reports.map((r) => {
        const item = document.createElement("li"), a = document.createElement("a"), from = document.createElement("span");
        a.href = `/events/${r.store_seq}`;
        a.textContent = `${r.body.where} lost ${r.body.count} ${r.body.what} (${r.body.reason})`;
        from.className = "small"; from.textContent = r.source;
        item.append(a, " ", from);
        return item;
      }));
    }
    const nothing = document.getElementById("nothing-lost");
    if (nothing) nothing.hidden = Object.keys(o.losses.store_by_reason).length + o.losses.recent_reports.length > 0;
    const bus = document.getElementById("bus");
    if (bus) {
      bus.replaceChildren(
        ...Object.entries(o.bus.batches_by_status).map(([st, n]) => li(`${st} batches: ${num(n)}`)),
        ...Object.entries(o.bus.events_by_outcome).map(([oc, n]) => li(`${oc} events: ${num(n)}`)),
      );
    }
    const table = document.getElementById("overview-collectors");
    if (table) rows(o.collectors, table, COLLECTOR);
  }

  const TOPICS = {
    overview,
    collectors: (d) => { const t = document.getElementById("collectors"); if (t) rows(d.items, t, COLLECTOR); },
    agents: (d) => {
      const t = document.getElementById("agents");
      if (t) rows(d.items, t, AGENT);
      const boxes = document.getElementById("boxes");
      if (boxes) for (const b of d.boxes || []) rows(b.sources, boxes, AGENT, `[data-box="${CSS.escape(b.box)}"]`);
    },
    alerts: (d) => set(document.getElementById("open-count"), `${num(d.open)} open`),
  };
  document.addEventListener("amoskys:status", (ev) => {
    const show = TOPICS[ev.detail.topic];
    if (show) show(ev.detail.data);
    document.body.dataset.liveTopic = ev.detail.topic;  // the newest topic shown (tests wait on it)
  });
})();
