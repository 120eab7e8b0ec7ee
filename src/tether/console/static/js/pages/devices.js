// Devices: a filtered, paged table with live presence (registering one is its own page).

import { call } from "../api.js";
import { DIALECTS, catalog, networkName, typeName } from "../catalog.js";
import { devicePath, field, h, paging, presence, replace, row, select, table, time } from "../dom.js";

const PAGE = 25;

export function render(main, { live, query }) {
  const search = h("input", { type: "search", value: query.get("q") || "" });
  const dialect = select([["", "any"], ...DIALECTS.map((d) => [d, d])], query.get("dialect"));
  const presenceFilter = select([["", "any"], ["true", "online"], ["false", "offline"]], query.get("online"));
  const network = select([["", "any"]], "");
  const type = select([["", "any"]], "");
  const filters = h("form", { class: "filters", role: "search", "aria-label": "Filter devices" },
    field("Search by name", search), field("Dialect", dialect), field("Network", network),
    field("Device type", type), field("Presence", presenceFilter), h("button", { type: "submit" }, "Apply"));
  const error = h("p", { class: "alert", role: "alert" });
  const results = h("div", { "aria-live": "polite" });
  const pager = h("div", { class: "pager" });
  replace(main, h("h1", {}, "Devices"), h("p", {}, h("a", { href: "#/register" }, "Register a device")),
    filters, error, results, pager);

  let skip = Number(query.get("skip") || 0);
  let cat = { networks: new Map(), types: new Map() };
  let stopped = false;
  const cells = new Map(); // device id -> presence <td>

  async function load() {
    const filter = {
      namePattern: search.value.trim() ? `%${search.value.trim()}%` : undefined,
      dialect: dialect.value || undefined,
      networkId: network.value || undefined,
      typeId: type.value || undefined,
      online: presenceFilter.value || undefined,
    };
    try {
      const found = await call("GET", "/api/v1/devices", { query: { ...filter, skip, take: PAGE + 1 } });
      if (stopped) return;
      error.textContent = "";
      cells.clear();
      const rows = found.slice(0, PAGE).map((d) => {
        const state = h("td", {}, presence(d.online));
        cells.set(d.id, state);
        return row([h("a", { href: devicePath(d.id) }, d.id), d.name, d.dialect, networkName(cat, d.networkId),
          typeName(cat, d.typeId), state, d.blocked ? "blocked" : "", time(d.lastSeen)]);
      });
      const headers = ["Device", "Name", "Dialect", "Network", "Type", "Presence", "Blocked", "Last seen"];
      replace(results, rows.length
        ? table(`Devices ${skip + 1}–${skip + rows.length}`, headers, rows)
        : h("p", {}, "No devices match."));
      paging(pager, skip, PAGE, found.length > PAGE, (at) => { skip = at; load(); });
    } catch (failure) {
      if (!stopped) error.textContent = `Cannot list devices: ${failure.message}`;
    }
  }

  filters.addEventListener("submit", (event) => { event.preventDefault(); skip = 0; load(); });
  const sub = live.subscribe("presence", {}, (event) => {
    const cell = cells.get(event.deviceId);
    if (cell) replace(cell, presence(event.online));
  }, load);

  catalog().then((found) => {
    if (stopped) return;
    cat = found;
    for (const [id, name] of cat.networks) network.append(h("option", { value: id }, name));
    for (const [id, name] of cat.types) type.append(h("option", { value: id }, name));
    load();
  }).catch((failure) => { error.textContent = `Cannot load networks: ${failure.message}`; load(); });

  return () => { stopped = true; sub.close(); };
}
