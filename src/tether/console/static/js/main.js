// The console's shell: sign-in, the header, and a hash router (#/devices/lamp-1) that
// renders one page at a time. A page is `render(main, ctx)` and returns a cleanup
// function (its live subscriptions and timers end when the user leaves the page).

import { onSignedOut, session, signOut } from "./api.js";
import { Live } from "./live.js";
import { h, replace } from "./dom.js";
import * as signin from "./pages/signin.js";
import * as overview from "./pages/overview.js";
import * as devices from "./pages/devices.js";
import * as device from "./pages/device.js";
import * as register from "./pages/register.js";
import * as commands from "./pages/commands.js";
import * as notifications from "./pages/notifications.js";
import * as admin from "./pages/admin.js";

const main = document.getElementById("main");
const header = document.querySelector("header.top");
const liveStatus = document.getElementById("live");
const live = new Live((state) => { liveStatus.textContent = `Live: ${state}`; });
let cleanup = null;

const routes = [
  [/^\/?$/, overview, "Overview"],
  [/^\/devices$/, devices, "Devices"],
  [/^\/devices\/(.+)$/, device, "Device"],
  [/^\/register$/, register, "Register a device"],
  [/^\/commands$/, commands, "Commands"],
  [/^\/notifications$/, notifications, "Notifications"],
  [/^\/admin$/, admin, "Administration"],
];

function current() {
  const hash = location.hash.startsWith("#/") ? location.hash.slice(1) : "/";
  const [path, search = ""] = hash.split("?");
  return { path, query: new URLSearchParams(search) };
}

async function route() {
  if (cleanup) { cleanup(); cleanup = null; }
  const signedIn = Boolean(session.get()?.accessToken);
  header.hidden = !signedIn;
  if (!signedIn) {
    live.stop();
    document.title = "Sign in · Tether";
    cleanup = signin.render(main, { onSignedIn: () => { live.start(); route(); } });
    return;
  }
  live.start();
  document.getElementById("who").textContent = `${session.get().login} (${session.get().role})`;
  for (const el of document.querySelectorAll(".admin-only")) el.hidden = !session.isAdmin;
  const { path, query } = current();
  let page = null, match = null, title = "";
  for (const [pattern, module, name] of routes) {
    match = path.match(pattern);
    if (match) { page = module; title = name; break; }
  }
  for (const link of document.querySelectorAll("header nav a")) {
    const target = link.getAttribute("href").slice(1);
    const active = target === "/" ? path === "/" : path === target || path.startsWith(`${target}/`);
    if (active) link.setAttribute("aria-current", "page"); else link.removeAttribute("aria-current");
  }
  if (!page || (page === admin && !session.isAdmin)) {
    replace(main, h("h1", {}, "Not found"), h("p", {}, "There is no such page. ", h("a", { href: "#/" }, "Back to the overview")));
    return;
  }
  document.title = `${title} · Tether`;
  const params = match.slice(1).map(decodeURIComponent);
  cleanup = page.render(main, { live, params, query }) || null;
  main.focus({ preventScroll: true });
}

window.addEventListener("hashchange", () => {
  if (location.hash === "#main") return; // the skip link
  route();
});
document.getElementById("sign-out").addEventListener("click", () => signOut());
onSignedOut(() => { location.hash = "#/"; route(); });

// A failure a page did not handle is shown, not swallowed.
window.addEventListener("unhandledrejection", (event) => {
  const message = event.reason?.message || String(event.reason);
  document.getElementById("status").textContent = `Error: ${message}`;
});

route();
