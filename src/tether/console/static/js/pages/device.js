// One device: identity, presence, shadow, config and firmware, block/unblock, credential,
// the send-command form, the command history and the latest notifications (all live), and
// a chart of every numeric notification parameter over a chosen window.

import { ApiError, call, callWithStatus, session } from "../api.js";
import { catalog, credentialControl, networkName, typeName } from "../catalog.js";
import { lineChart, numericSeries } from "../chart.js";
import { announce, compact, field, h, json, presence, replace, row, select, stateBadge, time } from "../dom.js";
import { commandRow, FINISHED, older } from "./commands.js";
import { helpers } from "./dialect_helpers.js";

const WINDOWS = [["15", "last 15 minutes"], ["60", "last hour"], ["360", "last 6 hours"], ["1440", "last 24 hours"]];
const LATEST = 20;

export function render(main, { live, params }) {
  const [deviceId] = params;
  const path = `/api/v1/devices/${encodeURIComponent(deviceId)}`;
  const error = h("p", { class: "alert", role: "alert" });
  replace(main, h("h1", {}, deviceId), error, h("p", { class: "muted" }, "Loading…"));
  let stopped = false;
  const subs = [];

  const presenceOut = h("span", {});
  const presenceFact = h("span", {});
  const showPresence = (online) => { replace(presenceOut, presence(online)); replace(presenceFact, presence(online)); };
  const commandsBody = h("tbody", {});
  const commandRows = new Map();
  const notesBody = h("tbody", {});
  const chartOut = h("div", {});
  const windowSelect = select(WINDOWS, "60");
  let notes = []; // newest last, within the chart window
  const followers = new Set(); // called with every command shown (the send form's outcome)
  const known = new Map(); // command id -> the newest state seen, of the rows shown

  /** Show a command (ignoring a state older than the one shown); returns the newest known. */
  function showCommand(command) {
    const shown = known.get(command.id);
    if (shown && older(command, shown)) return shown;
    known.set(command.id, command);
    for (const follow of followers) follow(command);
    const existing = commandRows.get(command.id);
    const fresh = commandRow(command, { withDevice: false, onCancel: cancel });
    if (existing) existing.replaceWith(fresh); else commandsBody.prepend(fresh);
    commandRows.set(command.id, fresh);
    while (commandsBody.children.length > LATEST) {
      const last = commandsBody.lastElementChild;
      commandRows.delete(Number(last.dataset.id));
      known.delete(Number(last.dataset.id));
      last.remove();
    }
    return command;
  }

  async function cancel(command) {
    try {
      showCommand(await call("POST", `/api/v1/commands/${command.id}/cancel`));
      announce(`Command ${command.id} cancelled.`);
    } catch (failure) {
      announce(`Cannot cancel command ${command.id}: ${failure.message}`);
    }
  }

  function noteRow(n) {
    return row([time(n.timestamp), n.name, compact(n.parameters)]);
  }

  function showNotification(n) {
    notesBody.prepend(noteRow(n));
    while (notesBody.children.length > LATEST) notesBody.lastElementChild.remove();
    notes.push(n);
    drawChart();
  }

  function drawChart() {
    const minutes = Number(windowSelect.value);
    const to = Date.now(), from = to - minutes * 60000;
    notes = notes.filter((n) => Date.parse(n.timestamp) >= from);
    replace(chartOut, lineChart(numericSeries(notes), { from, to, title: `Numeric notification values, ${windowSelect.selectedOptions[0].textContent}` }));
  }

  async function loadCommands() {
    const found = await call("GET", `${path}/commands`, { query: { sort: "id", desc: true, take: LATEST } });
    commandsBody.replaceChildren();
    commandRows.clear();
    known.clear();
    for (const command of found.reverse()) showCommand(command);
  }

  async function loadNotifications() {
    const minutes = Number(windowSelect.value);
    const start = new Date(Date.now() - minutes * 60000).toISOString();
    const [latest, windowed] = await Promise.all([
      call("GET", `${path}/notifications`, { query: { sort: "timestamp", desc: true, take: LATEST } }),
      call("GET", `${path}/notifications`, { query: { start, sort: "timestamp", desc: true, take: 1000 } }),
    ]);
    replace(notesBody, latest.map(noteRow));
    notes = windowed.reverse();
    drawChart();
  }

  async function load() {
    let device;
    try {
      device = await call("GET", path);
    } catch (failure) {
      replace(main, h("h1", {}, deviceId), h("p", { class: "alert", role: "alert" },
        failure instanceof ApiError && (failure.status === 404 || failure.status === 403)
          ? `No device ${deviceId} that you can see.` : `Cannot load the device: ${failure.message}`),
        h("p", {}, h("a", { href: "#/devices" }, "Back to the devices")));
      return;
    }
    if (stopped) return;
    const cat = await catalog().catch(() => ({ networks: new Map(), types: new Map() }));
    showPresence(device.online);
    const blockButton = h("button", { type: "button", class: device.blocked ? "" : "danger" }, device.blocked ? "Unblock" : "Block");
    blockButton.addEventListener("click", async () => {
      try {
        await call("POST", `${path}/${device.blocked ? "unblock" : "block"}`);
        announce(device.blocked ? "Device unblocked." : "Device blocked.");
        load();
      } catch (failure) { error.textContent = `Cannot change blocking: ${failure.message}`; }
    });
    const facts = h("dl", { class: "facts" },
      h("dt", {}, "Id"), h("dd", {}, device.id),
      h("dt", {}, "Name"), h("dd", {}, device.name),
      h("dt", {}, "Dialect"), h("dd", {}, device.dialect),
      h("dt", {}, "Network"), h("dd", {}, networkName(cat, device.networkId)),
      h("dt", {}, "Type"), h("dd", {}, typeName(cat, device.typeId)),
      h("dt", {}, "Owner"), h("dd", {}, device.ownerId === null ? "none" : `user #${device.ownerId}`),
      h("dt", {}, "Presence"), h("dd", {}, presenceFact),
      h("dt", {}, "Last seen"), h("dd", {}, time(device.lastSeen)),
      h("dt", {}, "Blocked"), h("dd", {}, device.blocked ? "yes" : "no"),
      h("dt", {}, "Credential"), h("dd", {}, device.hasCredential ? "issued" : "none"),
      h("dt", {}, "Attributes"), h("dd", {}, Object.keys(device.attributes || {}).length ? json(device.attributes) : "none"));

    const commandsTable = h("table", {}, h("caption", {}, "Latest commands"),
      h("thead", {}, h("tr", {}, ["Id", "Command", "State", "Progress", "Result", "Created", ""].map((c) => h("th", { scope: "col" }, c)))),
      commandsBody);
    const notesTable = h("table", {}, h("caption", {}, "Latest notifications"),
      h("thead", {}, h("tr", {}, ["Time", "Name", "Parameters"].map((c) => h("th", { scope: "col" }, c)))), notesBody);
    followers.clear(); // the form below replaces any earlier one
    windowSelect.onchange = () => loadNotifications().catch((f) => { error.textContent = f.message; });

    replace(main,
      h("h1", {}, device.name, " ", presenceOut),
      error,
      h("div", { class: "grid" },
        h("section", { class: "card", "aria-labelledby": "d-identity" }, h("h2", { id: "d-identity" }, "Identity"), facts,
          h("div", { class: "filters" }, blockButton, credentialControl(device.id, device.hasCredential))),
        h("section", { class: "card" }, h("h2", {}, "Send a command"),
          sendForm(path, device, showCommand, followers), helpers(device, path, showCommand))),
      h("section", {}, h("h2", {}, "Commands"), commandsTable),
      h("section", { "aria-labelledby": "d-notes" }, h("h2", { id: "d-notes" }, "Notifications"),
        h("div", { class: "filters" }, field("Chart window", windowSelect)), chartOut, notesTable),
      h("section", { "aria-labelledby": "d-shadow" }, h("h2", { id: "d-shadow" }, "Shadow, config and firmware"),
        await shadow(path, device)));
    await Promise.all([loadCommands(), loadNotifications()]);
  }

  load().then(() => {
    if (stopped) return;
    const filter = { deviceIds: [deviceId] };
    const resync = () => { loadCommands(); loadNotifications(); };
    subs.push(live.subscribe("presence", filter, (e) => showPresence(e.online), () => load()));
    subs.push(live.subscribe("command", filter, showCommand, resync));
    subs.push(live.subscribe("command_update", filter, showCommand));
    subs.push(live.subscribe("notification", filter, showNotification));
  }).catch((failure) => { error.textContent = failure.message; });
  const redraw = setInterval(() => { if (notes.length) drawChart(); }, 30000);
  return () => { stopped = true; clearInterval(redraw); for (const sub of subs) sub.close(); };
}

function sendForm(path, device, showCommand, followers) {
  const name = h("input", { name: "command", required: true, autocomplete: "off", list: "command-names" });
  const parameters = h("textarea", { name: "parameters", spellcheck: "false", placeholder: '{"key": "value"}' });
  const wait = h("input", { type: "checkbox", name: "wait" });
  const error = h("p", { class: "alert", role: "alert" });
  const outcome = h("div", { "aria-live": "polite" });
  const button = h("button", { type: "submit", class: "primary" }, "Send");
  const names = h("datalist", { id: "command-names" }, ["echo", "sleep", "fail", "steps"].map((n) => h("option", { value: n })));
  const form = h("form", {},
    h("div", { class: "filters" }, field("Command", name)),
    field("Parameters", parameters, "JSON; empty for none."),
    h("div", { class: "check" }, wait, h("label", { for: "send-wait" }, "Wait up to 30 s for the result")),
    error, button, outcome, names);
  wait.id = "send-wait";
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    let body;
    try {
      body = parameters.value.trim() ? JSON.parse(parameters.value) : null;
    } catch (failure) {
      error.textContent = `Parameters are not valid JSON: ${failure.message}`;
      parameters.setAttribute("aria-invalid", "true");
      parameters.focus();
      return;
    }
    parameters.removeAttribute("aria-invalid");
    button.disabled = true;
    try {
      const { status, data } = await callWithStatus("POST", `${path}/commands`, {
        body: { name: name.value.trim(), parameters: body }, query: wait.checked ? { wait: 30 } : undefined,
      });
      sent = data.id;
      // Live events may have overtaken this answer (the agent can finish first).
      describe(showCommand(data), status === 202);
    } catch (failure) {
      error.textContent = `Not sent: ${failure.message}`;
    } finally {
      button.disabled = false;
    }
  });
  // The outcome of the last command sent follows it live, as the table does.
  let sent = null;
  function describe(command, stillRunning) {
    const finished = FINISHED.has(command.state);
    replace(outcome, h("p", {}, `Command ${command.id} `, stateBadge(command.state),
      stillRunning && !finished ? " (still running after the wait)" : "",
      command.error ? ` (${command.error})` : ""),
    finished && command.result !== null && command.result !== undefined ? json(command.result) : "");
  }
  followers.add((command) => { if (command.id === sent) describe(command, false); });
  if (device.blocked) replace(outcome, h("p", { class: "muted" }, "This device is blocked: commands are refused."));
  return form;
}

/** The entry of a device/type/global catalogue that applies to the device (newest first). */
function applying(entries, device) {
  const newest = [...entries].sort((a, b) => b.id - a.id);
  return newest.find((e) => e.deviceId === device.id)
    ?? newest.find((e) => !e.deviceId && device.typeId !== null && e.deviceTypeId === device.typeId)
    ?? newest.find((e) => !e.deviceId && (e.deviceTypeId === null || e.deviceTypeId === undefined));
}

async function shadow(path, device) {
  const out = h("div", { class: "grid" });
  let state = { reported: {}, desired: {} };
  try { state = await call("GET", `${path}/state`); } catch { /* shown empty */ }
  const desired = h("textarea", { name: "desired", spellcheck: "false" }, JSON.stringify(state.desired || {}, null, 2));
  const error = h("p", { class: "alert", role: "alert" });
  const save = h("button", { type: "submit" }, "Save desired state");
  const form = h("form", { "aria-label": "Desired state" }, field("Desired state (JSON, merged)", desired), error, save);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    let value;
    try { value = JSON.parse(desired.value || "{}"); } catch (failure) {
      error.textContent = `Desired state is not valid JSON: ${failure.message}`;
      return;
    }
    if (value === null || typeof value !== "object" || Array.isArray(value)) {
      error.textContent = "Desired state must be a JSON object.";
      return;
    }
    try {
      const saved = await call("PATCH", `${path}/state`, { body: { desired: value } });
      desired.value = JSON.stringify(saved.desired, null, 2);
      announce("Desired state saved.");
    } catch (failure) { error.textContent = `Cannot save: ${failure.message}`; }
  });
  let config = "none";
  let firmware = "not visible to you";
  if (session.isAdmin) {
    // Admins read the catalogues (no 404 for "nothing applies"); the most specific wins.
    try {
      const [revisions, targets] = await Promise.all([
        call("GET", "/api/v1/config-revisions", { query: { take: 1000, sort: "id", desc: true } }),
        call("GET", "/api/v1/firmware-targets", { query: { take: 1000 } }),
      ]);
      const revision = applying(revisions, device);
      if (revision) config = h("div", {}, `revision ${revision.id}, `, time(revision.createdAt), json(revision.document));
      const target = applying(targets, device);
      firmware = target ? `${target.version} (${target.url})` : "none";
    } catch { firmware = "unknown"; }
  } else {
    try {
      const revision = await call("GET", `${path}/config`);
      config = h("div", {}, `revision ${revision.id}, `, time(revision.createdAt), json(revision.document));
    } catch { /* 404: no revision applies */ }
  }
  out.append(
    h("div", { class: "card" }, h("h3", {}, "Reported"), json(state.reported)),
    h("div", { class: "card" }, h("h3", {}, "Desired"), form),
    h("div", { class: "card" }, h("h3", {}, "Config revision"), config, h("h3", {}, "Firmware target"), h("p", {}, firmware)));
  return out;
}
