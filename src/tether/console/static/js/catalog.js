// What several pages share: the dialects, and names for network and device-type ids.

import { all, call, session } from "./api.js";
import { announce, field, h, replace, select } from "./dom.js";

export const DIALECTS = ["native", "devicehive", "ewelink", "controlid", "opengate", "infiniteclouds"];

/** Dialect attributes the create form asks for, by dialect: [attribute, label, hint]. */
export const DIALECT_ATTRIBUTES = {
  ewelink: [["apikey", "Factory apikey", "The device's factory apikey (a UUID), as its firmware sends it."],
    ["model", "Model", "Optional, e.g. BASIC or MINIR2."]],
  opengate: [["endpoint", "Operation endpoint", "Base URL of the device's operation service, e.g. http://10.0.0.7:1123. Leave empty for device-driven polling."]],
  controlid: [["long_poll", "Long poll (seconds)", "Optional: seconds an empty push poll is held."]],
  infiniteclouds: [["macAddress", "MAC address", "Optional."]],
};

/** Id hint per dialect: what the device id must be for that protocol. */
export const ID_HINTS = {
  controlid: "The terminal's own device id (its numeric serial id, as it sends in deviceId=).",
  ewelink: "The eWeLink deviceid (10 hex digits, e.g. 1000abcdef).",
  opengate: "The OpenGate device identifier.",
};

let cached = null;

/** Networks and device types the user can see: {networks: Map, types: Map}. */
export async function catalog() {
  cached ??= Promise.all([all("/api/v1/networks"), all("/api/v1/device-types")]).then(([networks, types]) => ({
    networks: new Map(networks.map((n) => [n.id, n.name])),
    types: new Map(types.map((t) => [t.id, t.name])),
  })).catch((error) => { cached = null; throw error; });
  return cached;
}

export function forgetCatalog() { cached = null; }

export function networkName(cat, id) {
  return id === null || id === undefined ? "none" : cat.networks.get(id) ?? `#${id}`;
}

export function typeName(cat, id) {
  return id === null || id === undefined ? "none" : cat.types.get(id) ?? `#${id}`;
}

/** The "issue or rotate credential" control: the new secret is shown once, here. */
export function credentialControl(deviceId, hasCredential) {
  const out = h("div", { "aria-live": "polite" });
  const button = h("button", { type: "button" }, hasCredential ? "Rotate credential" : "Issue credential");
  button.addEventListener("click", async () => {
    if (hasCredential && !confirm("Rotate the credential? The device's current one stops working at once.")) return;
    try {
      const made = await call("POST", `/api/v1/devices/${encodeURIComponent(deviceId)}/credential`);
      hasCredential = true;
      button.textContent = "Rotate credential";
      replace(out, h("div", { class: "secret" },
        h("p", {}, "The device's credential, shown only this once: copy it into the device now."),
        h("code", { "aria-label": "New device credential" }, made.credential)));
    } catch (failure) {
      replace(out, h("p", { class: "alert", role: "alert" }, `Cannot issue a credential: ${failure.message}`));
    }
  });
  return h("div", {}, button, out);
}

/** Network and device-type pickers for the create form. */
export function placementFields(cat) {
  const network = select([["", "none"], ...[...cat.networks].map(([id, name]) => [id, name])], "");
  const type = select([["", "none"], ...[...cat.types].map(([id, name]) => [id, name])], "");
  return { network, type, fields: [field("Network", network), field("Device type", type)] };
}

export function isAdmin() { return session.isAdmin; }
export { announce };
