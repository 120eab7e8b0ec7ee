// A live tail of notifications, filtered by device and name, that the user can pause.

import { call } from "../api.js";
import { compact, devicePath, field, h, replace, row, time } from "../dom.js";

const KEEP = 200;

export function render(main, { live }) {
  const deviceInput = h("input", {});
  const nameInput = h("input", {});
  const filters = h("form", { class: "filters", role: "search", "aria-label": "Filter notifications" },
    field("Device", deviceInput, "Device id; empty for all."), field("Name", nameInput, "Notification name; empty for all."),
    h("button", { type: "submit" }, "Apply"));
  const pause = h("button", { type: "button", "aria-pressed": "false" }, "Pause");
  const held = h("span", { class: "muted", role: "status" });
  const error = h("p", { class: "alert", role: "alert" });
  const body = h("tbody", {});
  const out = h("table", {}, h("caption", {}, "Latest notifications, newest first"),
    h("thead", {}, h("tr", {}, ["Time", "Device", "Name", "Parameters"].map((c) => h("th", { scope: "col" }, c)))), body);
  replace(main, h("h1", {}, "Notifications"), filters, h("div", { class: "pager" }, pause, held), error, out);

  let paused = false, stopped = false, sub = null;
  let buffer = [];

  function add(n) {
    body.prepend(row([time(n.timestamp), h("a", { href: devicePath(n.deviceId) }, n.deviceId), n.name, compact(n.parameters)]));
    while (body.children.length > KEEP) body.lastElementChild.remove();
  }

  function received(n) {
    if (paused) {
      buffer.push(n);
      if (buffer.length > KEEP) buffer = buffer.slice(-KEEP);
      held.textContent = `${buffer.length} new while paused`;
    } else add(n);
  }

  async function start() {
    if (sub) sub.close();
    const device = deviceInput.value.trim(), name = nameInput.value.trim();
    try {
      const found = await call("GET", "/api/v1/notifications", {
        query: { deviceId: device, name, sort: "timestamp", desc: true, take: 50 },
      });
      if (stopped) return;
      error.textContent = "";
      body.replaceChildren();
      for (const n of found.reverse()) add(n);
    } catch (failure) {
      error.textContent = `Cannot list notifications: ${failure.message}`;
    }
    const filter = {};
    if (device) filter.deviceIds = [device];
    if (name) filter.names = [name];
    sub = live.subscribe("notification", filter, received, start);
  }

  pause.addEventListener("click", () => {
    paused = !paused;
    pause.textContent = paused ? "Resume" : "Pause";
    pause.setAttribute("aria-pressed", String(paused));
    if (!paused) {
      for (const n of buffer) add(n);
      buffer = [];
      held.textContent = "";
    }
  });
  filters.addEventListener("submit", (event) => { event.preventDefault(); start(); });
  start();
  return () => { stopped = true; if (sub) sub.close(); };
}
