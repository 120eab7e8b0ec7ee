// Building the page from data without innerHTML: every value goes in as text, so a device
// name or a notification can never become markup (and the CSP forbids inline script anyway).

/**
 * h("button", {type: "button", onclick: fn, class: "primary"}, "Send")
 * Attributes: "class", "text", "on<event>" handlers, booleans (true sets, false omits),
 * anything else as an attribute. Children: nodes, strings, numbers, arrays; null skipped.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key === "text") {
      el.textContent = String(value);
    } else if (value === true) {
      el.setAttribute(key, "");
    } else {
      el.setAttribute(key, String(value));
    }
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

let fieldCounter = 0;

/** A labelled form control: the label names it for screen readers and tests. */
export function field(label, control, hint) {
  const id = control.id || `f${++fieldCounter}`;
  control.id = id;
  const parts = [h("label", { for: id }, label), control];
  if (hint) {
    const hintId = `${id}-hint`;
    control.setAttribute("aria-describedby", hintId);
    parts.push(h("small", { id: hintId, class: "muted" }, hint));
  }
  return h("div", { class: "field" }, parts);
}

export function select(options, value, attrs = {}) {
  const el = h("select", attrs);
  for (const [optionValue, text] of options) {
    el.append(h("option", { value: optionValue, selected: String(optionValue) === String(value ?? "") }, text));
  }
  return el;
}

/**
 * A table with a caption and header cells; rows are <tr>s or arrays of cells (nodes or text). A
 * header given as [name, "num"] right-aligns its column's title like its numbers.
 */
export function table(caption, headers, rows, attrs = {}) {
  const head = h("tr", {}, headers.map((spec) => {
    const [name, cls] = Array.isArray(spec) ? spec : [spec, null];
    return h("th", { scope: "col", class: cls }, name);
  }));
  const body = h("tbody", {}, rows.map((r) => (r instanceof HTMLTableRowElement ? r : row(r))));
  return h("table", attrs, h("caption", {}, caption), h("thead", {}, head), body);
}

export function row(cells, attrs = {}) {
  return h("tr", attrs, cells.map((cell) => (cell instanceof HTMLTableCellElement ? cell : h("td", {}, cell))));
}

export function presence(online) {
  const word = online ? "online" : "offline";
  return h("span", { class: `presence ${word}` }, word);
}

export function stateBadge(state) {
  return h("span", { class: `state ${state}` }, state.replace("_", " "));
}

export function time(iso) {
  if (!iso) return "never";
  const date = new Date(iso);
  return h("time", { datetime: iso, title: iso }, date.toLocaleString());
}

export function json(value) {
  return h("pre", {}, value === undefined ? "" : JSON.stringify(value, null, 2));
}

/** One line of JSON, for table cells. */
export function compact(value) {
  return h("code", {}, value === undefined ? "" : JSON.stringify(value));
}

export function devicePath(id) {
  return `#/devices/${encodeURIComponent(id)}`;
}

/** Say something to everyone, screen readers included (the polite status region). */
export function announce(message) {
  const status = document.getElementById("status");
  status.textContent = message;
  clearTimeout(announce.timer);
  announce.timer = setTimeout(() => { status.textContent = ""; }, 5000);
}

/** "Previous page" / "Next page" into `el`; `go(skip)` loads the page starting there. */
export function paging(el, skip, size, more, go) {
  const previous = h("button", { type: "button", disabled: skip === 0 }, "Previous page");
  const next = h("button", { type: "button", disabled: !more }, "Next page");
  previous.addEventListener("click", () => go(Math.max(0, skip - size)));
  next.addEventListener("click", () => go(skip + size));
  replace(el, previous, next);
}
