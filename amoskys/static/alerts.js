// AMOSKYS Alerts and rules pages: triage and suppression (admins), rule switches, live updates over SSE.
// The tables are rendered by the server; a refresh fetches the same page and takes its table, so what the
// browser shows is always what the server renders for the page's filters.
"use strict";
(function () {
  const page = document.body.dataset.page || "";
  const { post, say } = window.amoskys;  // app.js: POST with the CSRF token, the action line

  // ------------------------------------------------------------------ the table, refreshed in place
  let refreshing = false, again = false;
  async function refresh() {
    if (refreshing) { again = true; return; }
    refreshing = true;
    try {
      const resp = await fetch(location.pathname + location.search, { credentials: "same-origin" });
      if (!resp.ok) return;
      const fresh = new DOMParser().parseFromString(await resp.text(), "text/html");
      for (const id of ["alerts-body", "open-count", "older-p", "evidence"]) {
        const now = document.getElementById(id), next = fresh.getElementById(id);
        if (now && next) now.replaceWith(document.adoptNode(next));
      }
    } catch (e) { /* the next update tries again */ }
    finally {
      refreshing = false;
      if (again) { again = false; refresh(); }
    }
  }

  // ------------------------------------------------------------------ triage and suppress (admins)
  const form = document.getElementById("suppress-form");
  function openSuppress(row) {
    if (!form) return;
    const attrs = JSON.parse(row.dataset.attributes || "{}");
    form.querySelector("#suppress-rule").value = row.dataset.rule;
    const thisHost = form.querySelector("#suppress-this-host");
    thisHost.value = row.dataset.host; thisHost.textContent = `only ${row.dataset.host}`;
    form.querySelector("#suppress-host").value = row.dataset.host;
    const field = form.querySelector("#suppress-field");
    for (const name of Object.keys(attrs)) {  // the fields this alert's event had, beside the usual ones
      if (![...field.options].some((o) => o.value === name)) field.add(new Option(name, name));
    }
    const first = [...field.options].find((o) => o.value in attrs);
    if (first) field.value = first.value;
    const fill = () => { form.querySelector("#suppress-value").value = attrs[field.value] || ""; };
    field.onchange = fill; fill();
    form.hidden = false;
    form.scrollIntoView({ block: "nearest" });
  }
  if (form) {
    form.querySelector("#suppress-cancel").addEventListener("click", () => { form.hidden = true; });
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const f = Object.fromEntries(new FormData(form).entries());
      f.hours = parseInt(f.hours, 10);
      try {
        const s = await post("/api/v1/alerts/suppressions", f);
        form.hidden = true;
        say(`Suppressed ${f.field} = ${f.value} for rule ${f.rule_id} on ${f.host || "every host"} (id ${s.id}).`);
      } catch (e) { say(e.message, true); }
    });
  }
  const table = document.getElementById("alerts");
  if (table) table.addEventListener("click", async (ev) => {
    const row = ev.target.closest("tr[data-alert]");
    if (!row) return;
    const triage = ev.target.closest("button[data-triage]");
    if (ev.target.closest("button[data-suppress]")) { openSuppress(row); return; }
    if (!triage) return;
    triage.disabled = true;
    try {
      const r = await post(`/api/v1/alerts/${row.dataset.alert}/triage`, { state: triage.dataset.triage });
      say(`Alert ${r.id}: ${r.state.replace("_", " ")}.`);
      if (page.startsWith("/alerts/")) location.reload(); else await refresh();
    } catch (e) { say(e.message, true); triage.disabled = false; }
  });

  // ------------------------------------------------------------------ rules and suppressions (admins)
  document.querySelectorAll("button[data-rule-switch]").forEach((b) => b.addEventListener("click", async () => {
    const ruleId = b.closest("tr[data-rule-id]").dataset.ruleId;
    try { await post(`/api/v1/rules/${b.dataset.ruleSwitch}`, { rule_id: ruleId }); location.reload(); }
    catch (e) { say(e.message, true); }
  }));
  document.querySelectorAll("button[data-unsuppress]").forEach((b) => b.addEventListener("click", async () => {
    try { await post(`/api/v1/alerts/suppressions/${encodeURIComponent(b.dataset.unsuppress)}/delete`); location.reload(); }
    catch (e) { say(e.message, true); }
  }));

  // ------------------------------------------------------------------ live: new alerts and triage by others
  if (page === "/alerts") {
    const es = new EventSource("/api/v1/stream?kinds=alert,audit&status=alerts");
    es.addEventListener("status", (ev) => {  // the open count, shown by status.js
      document.dispatchEvent(new CustomEvent("amoskys:status", { detail: JSON.parse(ev.data) }));
    });
    let timer = null, fresh = 0;
    es.addEventListener("events", (ev) => {
      const list = JSON.parse(ev.data);
      fresh += list.filter((e) => e.kind === "alert").length;
      if (timer) return;
      timer = setTimeout(async () => {  // at most one refresh a second, whatever the alert rate
        timer = null;
        await refresh();
        const live = document.getElementById("alerts-live");
        if (live && fresh) live.textContent = `live: ${fresh} new alert events`;
      }, 1000);
    });
  }
})();
