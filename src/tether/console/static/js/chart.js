// Small SVG charts drawn by hand: a time series of lines, and bars per time bucket.
// Presentation attributes and classes only (no inline style), so the CSP holds.

import { h } from "./dom.js";

const NS = "http://www.w3.org/2000/svg";
const W = 640, H = 220, LEFT = 48, RIGHT = 12, TOP = 10, BOTTOM = 28;

function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, String(value));
  for (const child of children) el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return el;
}

function niceNumber(value) {
  if (Math.abs(value) >= 1000 || Number.isInteger(value)) return String(Math.round(value * 100) / 100);
  return String(Number(value.toPrecision(4)));
}

function clock(ms, withDate) {
  const date = new Date(ms);
  return withDate
    ? date.toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" })
    : date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

function frame(label, from, to, low, high) {
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-label": label });
  root.append(svg("title", {}, label));
  const x = (t) => LEFT + ((t - from) / Math.max(to - from, 1)) * (W - LEFT - RIGHT);
  const y = (v) => TOP + (1 - (v - low) / Math.max(high - low, 1e-9)) * (H - TOP - BOTTOM);
  for (let i = 0; i <= 4; i++) {
    const value = low + ((high - low) * i) / 4;
    root.append(svg("line", { class: "grid", x1: LEFT, x2: W - RIGHT, y1: y(value), y2: y(value) }));
    root.append(svg("text", { x: LEFT - 6, y: y(value) + 4, "text-anchor": "end" }, niceNumber(value)));
  }
  const withDate = to - from > 20 * 3600 * 1000;
  for (let i = 0; i <= 4; i++) {
    const t = from + ((to - from) * i) / 4;
    root.append(svg("text", { x: x(t), y: H - 8, "text-anchor": i === 0 ? "start" : i === 4 ? "end" : "middle" }, clock(t, withDate)));
  }
  root.append(svg("line", { class: "axis", x1: LEFT, x2: LEFT, y1: TOP, y2: H - BOTTOM }));
  root.append(svg("line", { class: "axis", x1: LEFT, x2: W - RIGHT, y1: H - BOTTOM, y2: H - BOTTOM }));
  return { root, x, y };
}

function range(values) {
  let low = Math.min(...values), high = Math.max(...values);
  if (!Number.isFinite(low)) { low = 0; high = 1; }
  if (low === high) { low -= 1; high += 1; }
  const pad = (high - low) * 0.08;
  return [low - pad, high + pad];
}

/**
 * Lines over time. series: [{name, points: [[ms, value], ...]}] (points sorted by time).
 * Returns a <figure> with the SVG, a legend and a caption naming each series' last value.
 */
export function lineChart(series, { from, to, title }) {
  const values = series.flatMap((s) => s.points.map((p) => p[1]));
  const [low, high] = range(values);
  const summary = series.map((s) => {
    const last = s.points[s.points.length - 1];
    return `${s.name}: ${s.points.length} points${last ? `, last ${niceNumber(last[1])}` : ""}`;
  }).join("; ");
  const { root, x, y } = frame(`${title}. ${summary || "no data"}`, from, to, low, high);
  series.slice(0, 5).forEach((s, index) => {
    const points = s.points.filter(([t]) => t >= from && t <= to);
    if (!points.length) return;
    root.append(svg("polyline", {
      class: `line s${index}`,
      points: points.map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(" "),
    }));
    for (const [t, v] of points.slice(-60)) {
      root.append(svg("circle", { class: `s${index}`, cx: x(t).toFixed(1), cy: y(v).toFixed(1), r: 2.5 }));
    }
  });
  const legend = h("ul", { class: "legend" }, series.slice(0, 5).map((s, index) =>
    h("li", {}, h("span", { class: `swatch s${index}`, "aria-hidden": "true" }), s.name)));
  return h("figure", { class: "chart-figure" }, root, legend, h("figcaption", { class: "muted" }, summary || "No numeric values in this window."));
}

/** Bars, one per bucket: counts [n, ...] starting at `start` (ms), `step` ms apart. */
export function barChart(counts, { start, step, title }) {
  const total = counts.reduce((a, b) => a + b, 0);
  const most = Math.max(0, ...counts);
  const peak = Math.max(4, Math.ceil(most / 4) * 4); // whole-number gridlines
  const from = start, to = start + step * counts.length;
  const label = `${title}: ${total} in total, at most ${most} in one minute`;
  const { root, x, y } = frame(label, from, to, 0, peak);
  counts.forEach((count, i) => {
    if (!count) return;
    const left = x(start + step * i), right = x(start + step * (i + 1));
    root.append(svg("rect", {
      class: "bar", x: (left + 0.5).toFixed(1), width: Math.max(right - left - 1, 1).toFixed(1),
      y: y(count).toFixed(1), height: (y(0) - y(count)).toFixed(1),
    }, svg("title", {}, `${clock(start + step * i)}: ${count}`)));
  });
  return h("figure", { class: "chart-figure" }, root, h("figcaption", { class: "muted" }, label));
}

/** The numeric parameters of notifications as series: {name: [[ms, value]]}, by time. */
export function numericSeries(notifications) {
  const byName = new Map();
  for (const n of notifications) {
    const params = n.parameters;
    const t = Date.parse(n.timestamp);
    const entries = typeof params === "number" ? [["value", params]]
      : params && typeof params === "object" && !Array.isArray(params) ? Object.entries(params) : [];
    for (const [key, value] of entries) {
      const number = typeof value === "number" ? value
        : value && typeof value === "object" && typeof value.value === "number" ? value.value : null;
      if (number === null || !Number.isFinite(number)) continue;
      const name = `${n.name}.${key}`;
      if (!byName.has(name)) byName.set(name, []);
      byName.get(name).push([t, number]);
    }
  }
  return [...byName.entries()].map(([name, points]) => ({ name, points: points.sort((a, b) => a[0] - b[0]) }));
}
