// The native REST API, as the signed-in user. The tokens live in sessionStorage (never in
// a URL): they survive a reload of this tab and end with it.

const KEY = "tether.session";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export const session = {
  get() {
    try { return JSON.parse(sessionStorage.getItem(KEY)); } catch { return null; }
  },
  set(value) { sessionStorage.setItem(KEY, JSON.stringify(value)); },
  clear() { sessionStorage.removeItem(KEY); },
  get isAdmin() { return this.get()?.role === "admin"; },
};

const listeners = new Set();
/** Called when the session ends (sign-out, or a refresh token that no longer works). */
export function onSignedOut(fn) { listeners.add(fn); }

export function signOut() {
  session.clear();
  for (const fn of listeners) fn();
}

async function send(method, path, body, token) {
  const headers = { Accept: "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "omit", cache: "no-store",
  });
  const text = await response.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = text; }
  }
  if (!response.ok) {
    const error = data && data.error ? data.error : { code: String(response.status), message: response.statusText };
    throw new ApiError(response.status, error.code, error.message);
  }
  return { status: response.status, data };
}

let refreshing = null;

async function refresh() {
  const current = session.get();
  if (!current?.refreshToken) throw new ApiError(401, "unauthorized", "signed out");
  refreshing ??= send("POST", "/api/v1/auth/refresh", { refreshToken: current.refreshToken })
    .then(({ data }) => { session.set({ ...session.get(), accessToken: data.accessToken }); })
    .finally(() => { refreshing = null; });
  return refreshing;
}

/** The access token; with `renew`, a new one from the refresh token first. */
export async function accessToken(renew = false) {
  if (renew) await refresh();
  return session.get()?.accessToken;
}

/** Call the API and return the decoded body. */
export async function call(method, path, options = {}) {
  return (await callWithStatus(method, path, options)).data;
}

/** Call the API: {status, data}. A 401 refreshes the access token once, then signs out. */
export async function callWithStatus(method, path, { body, query } = {}) {
  const url = query ? `${path}?${new URLSearchParams(clean(query))}` : path;
  try {
    return await send(method, url, body, session.get()?.accessToken);
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 401 || !session.get()) throw error;
    try {
      await refresh();
    } catch {
      signOut();
      throw error;
    }
    return send(method, url, body, session.get()?.accessToken);
  }
}

function clean(query) {
  const out = [];
  for (const [key, value] of Object.entries(query)) {
    if (value === undefined || value === null || value === "") continue;
    for (const item of Array.isArray(value) ? value : [value]) out.push([key, String(item)]);
  }
  return out;
}

export async function signIn(login, password) {
  const { data } = await send("POST", "/api/v1/auth/token", { login, password });
  session.set({ accessToken: data.accessToken, refreshToken: data.refreshToken, login });
  const me = await call("GET", "/api/v1/users/me");
  session.set({ ...session.get(), role: me.role, userId: me.id });
  return me;
}

/** Every item of a paged list (for small catalogues: networks, device types). */
export async function all(path, query = {}) {
  const items = [];
  for (let skip = 0; ; skip += 1000) {
    const page = await call("GET", path, { query: { ...query, skip, take: 1000 } });
    items.push(...page);
    if (page.length < 1000) return items;
  }
}
