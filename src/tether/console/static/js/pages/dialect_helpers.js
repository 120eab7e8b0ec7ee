// Shortcuts on the device page for what a dialect's devices understand: an eWeLink switch,
// Control iD's local-API commands. They fill in and send ordinary commands; nothing here
// bypasses the API's own checks.

import { call } from "../api.js";
import { announce, field, h, select } from "../dom.js";

const CONTROLID_TEMPLATES = [
  ["execute_actions", "Open door 1", { actions: [{ action: "door", parameters: "door=1" }] }],
  ["message_to_screen", "Message on screen", { message: "Hello", timeout: 5000 }],
  ["load_objects", "Load users", { object: "users", limit: 10 }],
  ["create_objects", "Create a user", { object: "users", values: [{ id: 1000, name: "Ana" }] }],
  ["destroy_objects", "Delete a user", { object: "users", where: { users: { id: 1000 } } }],
  ["get_configuration", "Read configuration", { general: ["language"] }],
  ["set_configuration", "Change configuration", { general: { language: "en_US" } }],
];

export function helpers(device, path, showCommand) {
  if (device.dialect === "ewelink") return ewelink(path, showCommand);
  if (device.dialect === "controlid") return controlid();
  return null;
}

function ewelink(path, showCommand) {
  const outlet = select([["", "single switch"], ...[0, 1, 2, 3].map((n) => [n, `outlet ${n}`])], "");
  async function flip(on) {
    const value = on ? "on" : "off";
    const parameters = outlet.value === "" ? { switch: value }
      : { switches: [{ switch: value, outlet: Number(outlet.value) }] };
    try {
      showCommand(await call("POST", `${path}/commands`, { body: { name: "update", parameters } }));
      announce(`Switch ${value} sent.`);
    } catch (failure) { announce(`Not sent: ${failure.message}`); }
  }
  const on = h("button", { type: "button" }, "Switch on");
  const off = h("button", { type: "button" }, "Switch off");
  on.addEventListener("click", () => flip(true));
  off.addEventListener("click", () => flip(false));
  return h("div", { class: "card" }, h("h3", {}, "eWeLink switch"), h("div", { class: "filters" }, field("Outlet", outlet), on, off));
}

function controlid() {
  const template = select([["", "choose…"], ...CONTROLID_TEMPLATES.map(([, label], i) => [i, label])], "");
  template.addEventListener("change", () => {
    const chosen = CONTROLID_TEMPLATES[Number(template.value)];
    if (!chosen || template.value === "") return;
    const form = template.closest(".card").parentElement.querySelector("form");
    form.querySelector("input[name=command]").value = chosen[0];
    form.querySelector("textarea[name=parameters]").value = JSON.stringify(chosen[2], null, 2);
    announce(`Form filled for ${chosen[0]}: adjust and send.`);
  });
  return h("div", { class: "card" }, h("h3", {}, "Control iD command builder"), field("Template", template));
}
