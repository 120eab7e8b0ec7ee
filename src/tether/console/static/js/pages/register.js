// Register a device of any dialect, with its dialect attributes, and issue its credential.

import { call } from "../api.js";
import { DIALECTS, DIALECT_ATTRIBUTES, ID_HINTS, catalog, credentialControl, placementFields } from "../catalog.js";
import { devicePath, field, h, replace, select } from "../dom.js";

export function render(main) {
  const out = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  replace(main, h("h1", {}, "Register a device"), out);
  catalog().catch(() => ({ networks: new Map(), types: new Map() }))
    .then((cat) => replace(out, createForm(cat)));
  return null;
}

function createForm(cat) {
  const id = h("input", { name: "id", placeholder: "generated when empty" });
  const name = h("input", { name: "name", required: true });
  const dialect = select(DIALECTS.map((d) => [d, d]), "native");
  const { network, type, fields } = placementFields(cat);
  const idHint = h("small", { class: "muted", id: "create-id-hint" });
  id.setAttribute("aria-describedby", "create-id-hint");
  const attributes = h("div", { class: "filters" });
  const error = h("p", { class: "alert", role: "alert" });
  const done = h("div", { "aria-live": "polite" });
  const inputs = new Map();

  function dialectChanged() {
    idHint.textContent = ID_HINTS[dialect.value] || "";
    inputs.clear();
    replace(attributes, (DIALECT_ATTRIBUTES[dialect.value] || []).map(([key, label, hint]) => {
      const input = h("input", { name: key });
      inputs.set(key, input);
      return field(label, input, hint);
    }));
  }
  dialect.addEventListener("change", dialectChanged);
  dialectChanged();

  const form = h("form", { class: "card", "aria-label": "Register a device" },
    h("div", { class: "filters" }, h("div", { class: "field" }, h("label", { for: "create-id" }, "Device id"), id, idHint),
      field("Name", name), field("Dialect", dialect), ...fields),
    attributes, error, h("button", { type: "submit", class: "primary" }, "Register"), done);
  id.id = "create-id";
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    const attrs = {};
    for (const [key, input] of inputs) {
      const value = input.value.trim();
      if (value) attrs[key] = /^\d+$/.test(value) && key !== "apikey" ? Number(value) : value;
    }
    try {
      const made = await call("POST", "/api/v1/devices", {
        body: {
          id: id.value.trim() || undefined, name: name.value.trim(), dialect: dialect.value,
          networkId: network.value ? Number(network.value) : null, typeId: type.value ? Number(type.value) : null,
          attributes: attrs,
        },
      });
      replace(done, h("p", {}, "Registered ", h("a", { href: devicePath(made.id) }, made.id), "."),
        credentialControl(made.id, false));
      form.reset();
      dialectChanged();
    } catch (failure) {
      error.textContent = `Cannot register the device: ${failure.message}`;
    }
  });
  return form;
}
