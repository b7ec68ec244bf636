// AMOSKYS charts: time series from /api/v1/series/* drawn as SVG, with a time axis, a value scale with
// units, values on hover and a range picker. No library, no build step; no inline script or style (the
// CSP forbids them: positions are set through the CSSOM).
"use strict";
(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const RANGES = ["15m", "1h", "24h", "7d"];
  const COLORS = ["#4fb3ff", "#f5b841", "#4cc38a", "#ff6b6b", "#b58cff", "#5ad1d1", "#ff9a52", "#c6d05a",
                  "#e77fc1", "#8b98a5"];
  const HEIGHT = 180, M = { left: 36, right: 12, top: 10, bottom: 24 };
  const REFRESH_MS = { "15m": 15000, "1h": 30000, "24h": 60000, "7d": 300000 };
  const stored = (() => { try { return localStorage.getItem("amoskys.range"); } catch (_) { return null; } })();
  let range = RANGES.includes(stored) ? stored : "1h";

  // ------------------------------------------------------------------ numbers with units
  function si(v, unit) {  // 1234567 bit/s -> "1.23 Mbit/s"
    const a = Math.abs(v);
    const steps = [[1e12, "T"], [1e9, "G"], [1e6, "M"], [1e3, "k"]];
    for (const [f, p] of steps) if (a >= f) return `${trim(v / f)} ${p}${unit}`;
    return `${trim(v)} ${unit}`;
  }
  function iec(v) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return `${trim(v)} ${units[i]}`;
  }
  function trim(v) {
    const a = Math.abs(v);
    const digits = a >= 100 ? 0 : a >= 10 ? 1 : a >= 1 ? 2 : 3;
    return String(Number(v.toFixed(digits)));
  }
  function fmt(v, unit) {
    if (v === null || v === undefined || Number.isNaN(v)) return "—";
    if (unit === "B") return iec(v);
    if (unit === "%") return `${trim(v)} %`;
    if (unit === "bit/s") return si(v, "bit/s");
    const n = si(v, "").trim();  // "1.2 k events/s", "3 /s" as "3/s"
    return unit.startsWith("/") ? `${n}${unit}` : `${n} ${unit}`;
  }
  function niceStep(max, n) {  // a step of 1, 2, 2.5 or 5 × 10^k giving about n intervals up to max
    const raw = max / n, mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const f = raw / mag;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10) * mag;
  }
  function niceBytesStep(max, n) {  // powers of 1024 times 1, 2 or 5
    const raw = max / n;
    let base = 1;
    while (raw >= base * 1024) base *= 1024;
    const f = raw / base;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : f <= 10 ? 10 : f <= 20 ? 20 : f <= 50 ? 50 : f <= 100 ? 100
      : f <= 200 ? 200 : f <= 500 ? 500 : 1024) * base;
  }
  const pad = (n) => String(n).padStart(2, "0");
  function timeLabel(t, span) {
    const d = new Date(t * 1000);
    const hm = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
    return span > 2 * 86400 ? `${d.toLocaleDateString(undefined, { weekday: "short" })} ${d.getDate()}` : hm;
  }
  function fullTime(t, step) {
    const d = new Date(t * 1000);
    const day = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
    const end = new Date((t + step) * 1000);
    return `${day} ${pad(d.getHours())}:${pad(d.getMinutes())}–${pad(end.getHours())}:${pad(end.getMinutes())}`;
  }
  const TIME_STEPS = [60, 300, 900, 1800, 3600, 7200, 4 * 3600, 6 * 3600, 12 * 3600, 86400];

  // ------------------------------------------------------------------ drawing
  function el(name, attrs, parent) {
    const e = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (parent) parent.append(e);
    return e;
  }

  // the series of an answer the figure shows (data-part: a nested part such as "memory")
  function partOf(answer, part) {
    const p = part ? answer[part] || { series: [] } : answer;
    return { unit: p.unit || answer.unit, series: p.series || [] };
  }

  // every bucket of the window, each series' value at it (null: no point)
  function table(answer, series, fill) {
    const times = [];
    for (let t = answer.start; t < answer.end; t += answer.step_seconds) times.push(t);
    const rows = series.map((s) => {
      const at = new Map(s.points.map(([t, v]) => [t, v]));
      return times.map((t) => at.has(t) ? at.get(t) : (fill === "zero" ? 0 : null));
    });
    return { times, rows };
  }

  function draw(fig, answer) {
    const svg = fig.querySelector(".tchart-body svg"), legend = fig.querySelector(".tchart-legend");
    const empty = fig.querySelector(".tchart-empty");
    const { unit, series } = partOf(answer, fig.dataset.part || "");
    const hasPoints = series.some((s) => s.points.length);
    const waiting = answer.polls_needed && empty && empty.dataset.waiting;
    if (empty) {
      empty.hidden = hasPoints;
      if (!hasPoints) empty.textContent = waiting ? empty.dataset.waiting : (empty.dataset.none || "No data in this range.");
    }
    svg.replaceChildren();
    const width = Math.max(260, Math.round(svg.getBoundingClientRect().width) || 600);
    svg.setAttribute("viewBox", `0 0 ${width} ${HEIGHT}`);
    const { times, rows } = table(answer, series, answer.fill);
    let max = 0;
    for (const r of rows) for (const v of r) if (v !== null && v > max) max = v;
    if (max <= 0) max = unit === "%" ? 100 : 1;
    const step = unit === "B" ? niceBytesStep(max, 4) : niceStep(max, 4);
    const top = Math.ceil(max / step - 1e-9) * step;
    const ticks = [];
    for (let v = 0; v <= top + step / 2; v += step) ticks.push([v, fmt(v, unit)]);
    // the scale's labels set the left margin (about 6.3 px a character at the axis' font size)
    const left = Math.max(M.left, 10 + Math.ceil(6.3 * Math.max(...ticks.map(([, l]) => l.length))));
    const plotW = width - left - M.right, plotH = HEIGHT - M.top - M.bottom;
    const x = (t) => left + ((t - answer.start) / Math.max(1, answer.end - answer.start)) * plotW;
    const xc = (t) => x(t + answer.step_seconds / 2);  // a point sits in the middle of its bucket
    const y = (v) => M.top + plotH - (v / top) * plotH;

    // value scale: grid lines and labels with units
    const yAxis = el("g", { class: "axis y-axis" }, svg);
    for (const [v, text] of ticks) {
      el("line", { x1: left, x2: left + plotW, y1: y(v), y2: y(v), class: "grid" }, yAxis);
      const label = el("text", { x: left - 6, y: y(v) + 4, "text-anchor": "end" }, yAxis);
      label.textContent = text;
    }
    // time axis: ticks at round local times
    const span = answer.end - answer.start;
    const tStep = TIME_STEPS.find((s) => span / s <= 6) || 86400;
    const xAxis = el("g", { class: "axis x-axis" }, svg);
    el("line", { x1: left, x2: left + plotW, y1: M.top + plotH, y2: M.top + plotH, class: "base" }, xAxis);
    const offset = new Date(answer.start * 1000).getTimezoneOffset() * 60;  // ticks at local round times
    let t0 = Math.ceil((answer.start - offset) / tStep) * tStep + offset;
    for (let t = t0; t <= answer.end; t += tStep) {
      el("line", { x1: x(t), x2: x(t), y1: M.top + plotH, y2: M.top + plotH + 4, class: "tick" }, xAxis);
      const label = el("text", { x: x(t), y: HEIGHT - 6, "text-anchor": "middle" }, xAxis);
      label.textContent = timeLabel(t, span);
    }
    // the lines (a gap where a sampled series has no point)
    rows.forEach((r, i) => {
      let d = "", pen = false;
      r.forEach((v, j) => {
        if (v === null) { pen = false; return; }
        d += `${pen ? "L" : "M"}${xc(times[j]).toFixed(1)},${y(v).toFixed(1)}`;
        pen = true;
      });
      const color = COLORS[i % COLORS.length];
      if (d) el("path", { d, class: "line", stroke: color, "data-series": series[i].name }, svg);
      // a lone point (no neighbour to draw a line to) still shows
      r.forEach((v, j) => {
        if (v !== null && (j === 0 || r[j - 1] === null) && (j === r.length - 1 || r[j + 1] === null)) {
          el("circle", { cx: xc(times[j]), cy: y(v), r: 2.5, fill: color }, svg);
        }
      });
    });
    const cursor = el("line", { class: "cursor", y1: M.top, y2: M.top + plotH, x1: -10, x2: -10 }, svg);
    // legend: each series' colour and name
    if (legend) {
      legend.replaceChildren(...series.map((s, i) => {
        const item = document.createElement("span"), dot = document.createElement("span");
        dot.className = `dot c${i % COLORS.length}`;
        item.append(dot, document.createTextNode(s.name));
        return item;
      }));
    }
    fig.chart = { answer, unit, series, times, rows, x, xc, left, plotW, width, cursor };
  }

  // ------------------------------------------------------------------ hover: the values at a time
  function hover(fig, ev) {
    const c = fig.chart, tip = fig.querySelector(".tchart-tip");
    if (!c || !tip || !c.times.length) return;
    const svg = fig.querySelector(".tchart-body svg"), box = svg.getBoundingClientRect();
    const px = ((ev.clientX - box.left) / box.width) * c.width;
    const frac = (px - c.left) / c.plotW;
    if (frac < 0 || frac > 1) { leave(fig); return; }
    const j = Math.min(c.times.length - 1, Math.max(0, Math.floor(frac * c.times.length)));
    const t = c.times[j];
    c.cursor.setAttribute("x1", c.xc(t)); c.cursor.setAttribute("x2", c.xc(t));
    const head = document.createElement("b");
    head.textContent = fullTime(t, c.answer.step_seconds);
    const lines = c.series.map((s, i) => {
      const line = document.createElement("div");
      const swatch = document.createElement("span");
      swatch.className = `dot c${i % COLORS.length}`;
      line.append(swatch, document.createTextNode(`${s.name}: ${fmt(c.rows[i][j], c.unit)}`));
      return line;
    });
    tip.replaceChildren(head, ...lines);
    tip.hidden = false;
    const left = (c.xc(t) / c.width) * box.width;
    tip.style.left = `${Math.min(Math.max(0, left + 12), Math.max(0, box.width - tip.offsetWidth))}px`;
  }
  function leave(fig) {
    const tip = fig.querySelector(".tchart-tip");
    if (tip) tip.hidden = true;
    if (fig.chart) { fig.chart.cursor.setAttribute("x1", -10); fig.chart.cursor.setAttribute("x2", -10); }
  }

  // ------------------------------------------------------------------ loading, range picking, refresh
  // `answers`: one request per URL and round (two charts of one answer, e.g. a host's CPU and memory,
  // share it)
  async function answer(url) {
    const r = await fetch(url, { credentials: "same-origin" });
    if (!r.ok) throw new Error((await r.json().catch(() => ({}))).error || r.statusText);
    return r.json();
  }
  async function load(fig, answers) {
    const src = fig.dataset.src;
    const url = `${src}${src.includes("?") ? "&" : "?"}range=${encodeURIComponent(range)}`;
    fig.setAttribute("aria-busy", "true");
    fig.dataset.state = "loading";
    try {
      if (!answers.has(url)) answers.set(url, answer(url));
      draw(fig, await answers.get(url));
      fig.dataset.state = "drawn";
    } catch (e) {
      const empty = fig.querySelector(".tchart-empty");
      if (empty) { empty.hidden = false; empty.textContent = `Cannot load the chart: ${e.message}`; }
      fig.dataset.state = "error";
    } finally {
      fig.removeAttribute("aria-busy");
    }
  }

  const figures = Array.from(document.querySelectorAll("figure.tchart[data-src]"));
  if (!figures.length) return;
  function showRange() {
    document.querySelectorAll(".range-picker button[data-range]").forEach((b) => {
      b.setAttribute("aria-pressed", b.dataset.range === range ? "true" : "false");
    });
  }
  let timer = null;
  function loadAll() {
    const answers = new Map();
    figures.forEach((fig) => load(fig, answers));
    clearTimeout(timer);
    timer = setTimeout(loadAll, REFRESH_MS[range]);
  }
  document.querySelectorAll(".range-picker").forEach((picker) => picker.addEventListener("click", (ev) => {
    const b = ev.target.closest("button[data-range]");
    if (!b || b.dataset.range === range) return;
    range = b.dataset.range;
    try { localStorage.setItem("amoskys.range", range); } catch (_) { /* private mode: not kept */ }
    showRange();
    loadAll();
  }));
  figures.forEach((fig) => {
    const svg = fig.querySelector(".tchart-body svg");
    svg.addEventListener("mousemove", (ev) => hover(fig, ev));
    svg.addEventListener("mouseleave", () => leave(fig));
  });
  let resized = null;
  window.addEventListener("resize", () => {
    clearTimeout(resized);
    resized = setTimeout(() => figures.forEach((f) => f.chart && draw(f, f.chart.answer)), 150);
  });
  showRange();
  loadAll();
})();
