// AMOSKYS dashboard tables: times in the browser's zone, a visible cue on tables wider than the screen,
// and sorting the rows of the page shown. No inline script anywhere (the CSP forbids it).
"use strict";
(function () {
  // Times: the server writes UTC with the ISO instant in `datetime`; show the browser's zone, keep the
  // instant on hover.
  const pad = (n) => String(n).padStart(2, "0");
  function localText(d) {
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }
  function localTimes(root) {
    root.querySelectorAll("time[datetime]:not([data-local])").forEach((t) => {
      const d = new Date(t.getAttribute("datetime"));
      if (isNaN(d.getTime())) return;
      t.textContent = localText(d);
      t.title = t.getAttribute("datetime");
      t.dataset.local = "1";
    });
  }
  localTimes(document);
  // rows other scripts add later (live streams) get the same treatment
  new MutationObserver((changes) => {
    for (const c of changes) c.addedNodes.forEach((n) => { if (n.nodeType === 1) localTimes(n); });
  }).observe(document.body, { childList: true, subtree: true });

  // Wide tables: a cue that the table scrolls sideways, shown only while it does not fit.
  function cue(box) {
    const over = box.scrollWidth > box.clientWidth + 1;
    box.classList.toggle("overflowing", over);
    box.classList.toggle("at-end", box.scrollLeft + box.clientWidth >= box.scrollWidth - 1);
    let hint = box.previousElementSibling;
    if (!(hint && hint.classList.contains("scroll-hint"))) {
      if (!over) return;
      hint = document.createElement("p");
      hint.className = "scroll-hint muted small";
      hint.setAttribute("aria-hidden", "true");
      hint.textContent = "Wider than the screen: swipe or scroll the table sideways →";
      box.before(hint);
    }
    hint.hidden = !over;
  }
  const boxes = Array.from(document.querySelectorAll(".scroll"));
  boxes.forEach((box) => { cue(box); box.addEventListener("scroll", () => cue(box), { passive: true }); });
  window.addEventListener("resize", () => boxes.forEach(cue));

  // Sorting: the rows of the page shown (the server pages newest first; "Older →" continues that order).
  function key(cell) {
    const raw = cell.dataset.sort !== undefined ? cell.dataset.sort : cell.textContent.trim();
    const n = Number(raw.replace(/[, ]/g, ""));
    return raw !== "" && !isNaN(n) ? n : raw.toLowerCase();
  }
  document.querySelectorAll("table.sortable").forEach((table) => {
    const body = table.tBodies[0];
    if (!body || body.rows.length < 2) return;
    const note = document.createElement("caption");
    note.className = "muted small sort-note";
    note.textContent = "Click a column to sort the rows of this page.";
    table.prepend(note);
    Array.from(table.tHead.rows[0].cells).forEach((th, col) => {
      const b = document.createElement("button");
      b.type = "button"; b.className = "sort"; b.textContent = th.textContent;
      b.title = "sort the rows of this page";
      th.replaceChildren(b);
      b.addEventListener("click", () => {
        const down = th.getAttribute("aria-sort") !== "descending";
        table.querySelectorAll("th[aria-sort]").forEach((h) => h.removeAttribute("aria-sort"));
        th.setAttribute("aria-sort", down ? "descending" : "ascending");
        const rows = Array.from(body.rows).filter((r) => r.cells.length > col);
        rows.sort((a, b2) => {
          const x = key(a.cells[col]), y = key(b2.cells[col]);
          const c = x < y ? -1 : x > y ? 1 : 0;
          return down ? -c : c;
        });
        body.append(...rows);
      });
    });
  });
})();
