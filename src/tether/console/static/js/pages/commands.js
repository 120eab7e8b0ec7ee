// Commands across the devices the user sees: filtered by state, device, dialect and time,
// updated live, with cancel for the unfinished ones.

import { call } from "../api.js";
import { DIALECTS } from "../catalog.js";
import { announce, devicePath, field, h, json, paging, replace, select, stateBadge, time } from "../dom.js";

export const STATES = ["pending", "sent", "delivered", "in_progress", "succeeded", "failed", "timed_out", "expired", "cancelled"];
export const FINISHED = new Set(["succeeded", "failed", "timed_out", "expired", "cancelled"]);

/**
 * Whether `a` is an older state of the command than `b`: by update time, then (times are
 * compared to the millisecond, and a fast device moves faster) by lifecycle order. Live
 * events and REST answers can arrive in any order; the newest state must win.
 */
export function older(a, b) {
  const ta = Date.parse(a.updatedAt), tb = Date.parse(b.updatedAt);
  if (ta !== tb) return ta < tb;
  return STATES.indexOf(a.state) < STATES.indexOf(b.state);
}
const PAGE = 25;

/** One command as a table row: state, steps (a timeline), result or error, cancel. */
export function commandRow(command, { withDevice, onCancel }) {
  const steps = command.steps?.length
    ? h("ol", { class: "timeline" }, command.steps.map((s) =>
      h("li", {}, time(s.time), ` ${s.name}: ${s.state}`, s.description ? ` (${s.description})` : "")))
    : null;
  const outcome = command.error ? h("span", { class: "alert" }, command.error)
    : command.result !== null && command.result !== undefined ? json(command.result) : "";
  let action = "";
  if (!FINISHED.has(command.state)) {
    action = h("button", { type: "button", class: "danger" }, "Cancel", h("span", { class: "sr-only" }, ` #${command.id}`));
    action.addEventListener("click", () => onCancel(command));
  }
  const cells = [
    String(command.id),
    withDevice ? h("a", { href: devicePath(command.deviceId) }, command.deviceId) : null,
    command.name,
    stateBadge(command.state),
    h("div", {}, command.status ? `status: ${command.status}` : "", steps),
    outcome,
    time(command.createdAt),
    action,
  ].filter((cell) => cell !== null);
  const tr = h("tr", { "data-id": command.id, "data-state": command.state }, cells.map((c) => h("td", {}, c)));
  return tr;
}

export function render(main, { live, query }) {
  const state = select([["", "any"], ...STATES.map((s) => [s, s.replace("_", " ")])], query.get("state"));
  const deviceInput = h("input", { value: query.get("deviceId") || "" });
  const dialect = select([["", "any"], ...DIALECTS.map((d) => [d, d])], query.get("dialect"));
  const after = h("input", { type: "datetime-local" });
  const before = h("input", { type: "datetime-local" });
  const filters = h("form", { class: "filters", role: "search", "aria-label": "Filter commands" },
    field("State", state), field("Device", deviceInput), field("Dialect", dialect),
    field("Created after", after), field("Created before", before), h("button", { type: "submit" }, "Apply"));
  const error = h("p", { class: "alert", role: "alert" });
  const body = h("tbody", {});
  const out = h("table", {}, h("caption", {}, "Commands, newest first"),
    h("thead", {}, h("tr", {}, ["Id", "Device", "Name", "State", "Progress", "Result", "Created", ""].map((c) => h("th", { scope: "col" }, c)))), body);
  const pager = h("div", { class: "pager" });
  replace(main, h("h1", {}, "Commands"), filters, error, out, pager);
  const rows = new Map();
  let skip = 0, stopped = false;

  const iso = (input) => (input.value ? new Date(input.value).toISOString() : undefined);

  async function cancel(command) {
    try {
      show(await call("POST", `/api/v1/commands/${command.id}/cancel`));
      announce(`Command ${command.id} cancelled.`);
    } catch (failure) { announce(`Cannot cancel command ${command.id}: ${failure.message}`); }
  }

  const known = new Map(); // command id -> the newest state shown

  function show(command, prepend = false) {
    const shown = known.get(command.id);
    if (shown && older(command, shown)) return;
    const existing = rows.get(command.id);
    const fresh = commandRow(command, { withDevice: true, onCancel: cancel });
    if (existing) existing.replaceWith(fresh);
    else if (prepend) body.prepend(fresh);
    else return;
    rows.set(command.id, fresh);
    known.set(command.id, command);
  }

  function matches(command) {
    return skip === 0 && !dialect.value && !after.value && !before.value
      && (!state.value || command.state === state.value)
      && (!deviceInput.value.trim() || command.deviceId === deviceInput.value.trim());
  }

  async function load() {
    try {
      const found = await call("GET", "/api/v1/commands", {
        query: {
          state: state.value, deviceId: deviceInput.value.trim(), dialect: dialect.value,
          createdAfter: iso(after), createdBefore: iso(before), sort: "id", desc: true, skip, take: PAGE + 1,
        },
      });
      if (stopped) return;
      error.textContent = "";
      rows.clear();
      known.clear();
      body.replaceChildren();
      for (const command of found.slice(0, PAGE)) {
        const tr = commandRow(command, { withDevice: true, onCancel: cancel });
        rows.set(command.id, tr);
        known.set(command.id, command);
        body.append(tr);
      }
      if (!found.length) body.append(h("tr", {}, h("td", { colspan: 8 }, "No commands match.")));
      paging(pager, skip, PAGE, found.length > PAGE, (at) => { skip = at; load(); });
    } catch (failure) {
      if (!stopped) error.textContent = `Cannot list commands: ${failure.message}`;
    }
  }

  filters.addEventListener("submit", (event) => { event.preventDefault(); skip = 0; load(); });
  const subs = [
    live.subscribe("command", {}, (c) => { if (matches(c)) show(c, true); }, load),
    live.subscribe("command_update", {}, (c) => show(c)),
  ];
  load();
  return () => { stopped = true; for (const sub of subs) sub.close(); };
}
