// Administration (admins only; the API refuses the rest anyway): users with their network
// grants and unlocking, networks, device types, and API keys (shown once; revoke).

import { all, call } from "../api.js";
import { forgetCatalog } from "../catalog.js";
import { announce, field, h, replace, select, table, time } from "../dom.js";

export function render(main) {
  const users = h("section", {});
  const networks = h("section", {});
  const types = h("section", {});
  const keys = h("section", {});
  replace(main, h("h1", {}, "Administration"), users, h("div", { class: "grid" }, networks, types), keys);
  let stopped = false;

  async function guard(what, fn) {
    try { await fn(); } catch (failure) { announce(`${what}: ${failure.message}`); }
  }

  async function loadUsers() {
    const [list, nets] = await Promise.all([all("/api/v1/users"), all("/api/v1/networks")]);
    if (stopped) return;
    const names = new Map(nets.map((n) => [n.id, n.name]));
    const rows = list.map((user) => {
      const grants = h("ul", { class: "legend" }, user.networkIds.map((id) => {
        const revoke = h("button", { type: "button" }, "Revoke", h("span", { class: "sr-only" }, ` ${names.get(id) ?? id} from ${user.login}`));
        revoke.addEventListener("click", () => guard("Cannot revoke", async () => {
          await call("DELETE", `/api/v1/users/${user.id}/networks/${id}`);
          loadUsers();
        }));
        return h("li", {}, names.get(id) ?? `#${id}`, " ", revoke);
      }));
      const pick = select([["", "grant a network…"], ...nets.filter((n) => !user.networkIds.includes(n.id)).map((n) => [n.id, n.name])], "");
      pick.setAttribute("aria-label", `Grant a network to ${user.login}`);
      pick.addEventListener("change", () => guard("Cannot grant", async () => {
        if (!pick.value) return;
        await call("PUT", `/api/v1/users/${user.id}/networks/${pick.value}`);
        loadUsers();
      }));
      let unlock = "";
      if (user.status !== "active") {
        unlock = h("button", { type: "button" }, user.status === "locked" ? "Unlock" : "Enable", h("span", { class: "sr-only" }, ` ${user.login}`));
        unlock.addEventListener("click", () => guard("Cannot unlock", async () => {
          await call("PATCH", `/api/v1/users/${user.id}`, { body: { status: "active" } });
          announce(`${user.login} is active again.`);
          loadUsers();
        }));
      }
      return [user.login, user.role, user.status, h("div", {}, grants, user.role === "admin" ? "all (admin)" : pick), time(user.lastLogin), unlock];
    });
    const login = h("input", { autocomplete: "off", required: true });
    const password = h("input", { type: "password", autocomplete: "new-password", required: true });
    const role = select([["client", "client"], ["admin", "admin"]], "client");
    const form = h("form", { class: "filters", "aria-label": "New user" },
      field("New user's login", login), field("New user's password", password), field("Role", role),
      h("button", { type: "submit" }, "Create user"));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      guard("Cannot create the user", async () => {
        await call("POST", "/api/v1/users", { body: { login: login.value.trim(), password: password.value, role: role.value } });
        announce("User created.");
        loadUsers();
      });
    });
    replace(users, h("h2", {}, "Users"), table("Users", ["Login", "Role", "Status", "Networks", "Last sign-in", ""], rows), form);
  }

  function scopes(section, path, title, singular) {
    async function load() {
      const list = await all(path);
      if (stopped) return;
      const name = h("input", { required: true });
      const form = h("form", { class: "filters" }, field(`New ${singular} name`, name), h("button", { type: "submit" }, `Create ${singular}`));
      form.addEventListener("submit", (event) => {
        event.preventDefault();
        guard(`Cannot create the ${singular}`, async () => {
          await call("POST", path, { body: { name: name.value.trim() } });
          forgetCatalog();
          load();
          if (path.endsWith("networks")) loadUsers();
        });
      });
      replace(section, h("h2", {}, title), table(title, ["Id", "Name", "Description"], list.map((s) => [String(s.id), s.name, s.description ?? ""])), form);
    }
    return load;
  }

  async function loadKeys() {
    const list = await call("GET", "/api/v1/apikeys", { query: { take: 1000 } });
    if (stopped) return;
    const shown = h("div", { "aria-live": "polite" });
    const rows = list.map((key) => {
      let revoke = key.revoked ? "revoked" : h("button", { type: "button", class: "danger" }, "Revoke", h("span", { class: "sr-only" }, ` key ${key.name}`));
      if (!key.revoked) {
        revoke.addEventListener("click", () => guard("Cannot revoke", async () => {
          if (!confirm(`Revoke the API key ${key.name}?`)) return;
          await call("DELETE", `/api/v1/apikeys/${key.id}`);
          loadKeys();
        }));
      }
      return [key.name, `${key.prefix}…`, String(key.userId), time(key.createdAt), time(key.lastUsedAt), revoke];
    });
    const name = h("input", { required: true });
    const form = h("form", { class: "filters" }, field("New key name", name), h("button", { type: "submit" }, "Create API key"));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      guard("Cannot create the key", async () => {
        const made = await call("POST", "/api/v1/apikeys", { body: { name: name.value.trim() } });
        await loadKeys();
        keys.append(h("div", { class: "secret" }, h("p", {}, `API key ${made.name}, shown only this once:`), h("code", {}, made.key)));
      });
    });
    replace(keys, h("h2", {}, "API keys"), table("API keys", ["Name", "Prefix", "User", "Created", "Last used", ""], rows), form, shown);
  }

  guard("Cannot load users", loadUsers);
  guard("Cannot load networks", scopes(networks, "/api/v1/networks", "Networks", "network"));
  guard("Cannot load device types", scopes(types, "/api/v1/device-types", "Device types", "device type"));
  guard("Cannot load API keys", loadKeys);
  return () => { stopped = true; };
}
