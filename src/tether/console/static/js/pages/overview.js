// Fleet overview: presence per dialect, the last hour's commands by state, notifications
// per minute, and this node's health. Refreshed every few seconds and whenever a device
// comes or goes.

import { call } from "../api.js";
import { barChart } from "../chart.js";
import { h, replace, table } from "../dom.js";

const STATES = ["pending", "sent", "delivered", "in_progress", "succeeded", "failed", "timed_out", "expired", "cancelled"];

export function render(main, { live }) {
  const devices = h("section", { class: "card", "aria-labelledby": "ov-devices" }, h("h2", { id: "ov-devices" }, "Devices"));
  const commands = h("section", { class: "card", "aria-labelledby": "ov-commands" }, h("h2", { id: "ov-commands" }, "Commands, last hour"));
  const health = h("section", { class: "card", "aria-labelledby": "ov-health" }, h("h2", { id: "ov-health" }, "This node"));
  const rate = h("section", { class: "card", "aria-labelledby": "ov-rate" }, h("h2", { id: "ov-rate" }, "Notifications per minute, last hour"));
  const error = h("p", { class: "alert", role: "alert" });
  replace(main, h("h1", {}, "Fleet overview"), error, h("div", { class: "grid" }, devices, commands, health), rate);

  let stopped = false;
  async function refresh() {
    try {
      const [fleet, ready] = await Promise.all([call("GET", "/api/v1/fleet"), readiness()]);
      if (stopped) return;
      error.textContent = "";
      const online = fleet.devices.reduce((n, d) => n + d.online, 0);
      const total = fleet.devices.reduce((n, d) => n + d.online + d.offline, 0);
      replace(devices, h("h2", { id: "ov-devices" }, "Devices"),
        h("p", {}, `${online} of ${total} online.`, " ", h("a", { href: "#/devices" }, "All devices")),
        table("Devices online and offline per dialect", ["Dialect", ["Online", "num"], ["Offline", "num"]],
          fleet.devices.map((d) => [h("a", { href: `#/devices?dialect=${encodeURIComponent(d.dialect)}` }, d.dialect),
            h("td", { class: "num" }, d.online), h("td", { class: "num" }, d.offline)])));
      const byState = STATES.filter((s) => fleet.commands[s]).map((s) => [
        h("a", { href: `#/commands?state=${s}` }, s.replace("_", " ")), h("td", { class: "num" }, fleet.commands[s])]);
      replace(commands, h("h2", { id: "ov-commands" }, "Commands, last hour"),
        byState.length ? table("Commands created in the last hour by state", ["State", ["Commands", "num"]], byState)
          : h("p", { class: "muted" }, "No commands in the last hour."));
      replace(health, h("h2", { id: "ov-health" }, "This node"),
        h("dl", { class: "facts" },
          h("dt", {}, "Node"), h("dd", {}, fleet.nodeId),
          h("dt", {}, "Readiness"), h("dd", {}, ready),
          h("dt", {}, "Live updates"), h("dd", {}, document.getElementById("live").textContent.replace("Live: ", "")),
          h("dt", {}, "Server time"), h("dd", {}, new Date(fleet.at).toLocaleString())));
      replace(rate, h("h2", { id: "ov-rate" }, "Notifications per minute, last hour"),
        barChart(fleet.notificationsPerMinute, { start: Date.parse(fleet.minutesSince), step: 60000, title: "Notifications per minute" }));
    } catch (failure) {
      if (!stopped) error.textContent = `Cannot load the overview: ${failure.message}`;
    }
  }

  let pending = null;
  const soon = () => { clearTimeout(pending); pending = setTimeout(refresh, 400); };
  const presence = live.subscribe("presence", {}, soon, soon);
  const timer = setInterval(refresh, 5000);
  refresh();
  return () => { stopped = true; clearInterval(timer); clearTimeout(pending); presence.close(); };
}

async function readiness() {
  const response = await fetch("/readyz", { cache: "no-store" });
  if (response.ok) return "ready";
  const body = await response.json().catch(() => null);
  return `not ready: ${body?.error?.message || response.status}`;
}
