// The client WebSocket (/api/v1/ws): live presence, commands and notifications.
// It authenticates with a first frame (the token never goes in the URL), reconnects by
// itself with backoff when the socket drops, subscribes again, and tells each subscriber
// to re-read what it may have missed while disconnected.

import { accessToken, signOut } from "./api.js";

export class Live {
  constructor(onStatus) {
    this.onStatus = onStatus;
    this.ws = null;
    this.ready = false;
    this.nextId = 1;
    this.pending = new Map(); // requestId -> {resolve, reject}
    this.subs = new Set();
    this.byServerId = new Map();
    this.backoff = 500;
    this.stopped = true;
    this.everConnected = false;
  }

  start() {
    if (!this.stopped) return;
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.subs.clear();
    this.byServerId.clear();
    if (this.ws) this.ws.close(1000, "signed out");
    this.ws = null;
    this.ready = false;
  }

  connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${scheme}//${location.host}/api/v1/ws`);
    this.ws = ws;
    this.onStatus("connecting");
    ws.addEventListener("open", () => this.opened(ws));
    ws.addEventListener("message", (message) => this.received(message.data));
    ws.addEventListener("close", () => this.closed(ws));
  }

  async opened(ws) {
    try {
      try {
        await this.request("authenticate", { token: await accessToken() });
      } catch (error) {
        if (error.code !== "unauthorized") throw error;
        await this.request("authenticate", { token: await accessToken(true) });
      }
    } catch (error) {
      if (error.code === "unauthorized") signOut();
      ws.close();
      return;
    }
    this.ready = true;
    this.backoff = 500;
    this.onStatus("connected");
    const again = this.everConnected;
    this.everConnected = true;
    for (const sub of this.subs) {
      await this.attach(sub);
      if (again && sub.resync) sub.resync();
    }
  }

  closed(ws) {
    if (this.ws !== ws) return;
    this.ready = false;
    this.byServerId.clear();
    for (const sub of this.subs) sub.serverId = null;
    for (const { reject } of this.pending.values()) reject(Object.assign(new Error("disconnected"), { code: "disconnected" }));
    this.pending.clear();
    if (this.stopped) return;
    this.onStatus("reconnecting");
    this.timer = setTimeout(() => this.connect(), this.backoff);
    this.backoff = Math.min(this.backoff * 2, 10000);
  }

  received(text) {
    let frame;
    try { frame = JSON.parse(text); } catch { return; }
    if (frame.type === "event") {
      const sub = this.byServerId.get(frame.subscriptionId);
      if (sub) sub.handler(frame.data, frame.topic);
      return;
    }
    const waiter = this.pending.get(frame.requestId);
    if (!waiter) return;
    this.pending.delete(frame.requestId);
    if (frame.type === "error") {
      waiter.reject(Object.assign(new Error(frame.error.message), { code: frame.error.code }));
    } else {
      waiter.resolve(frame.data);
    }
  }

  request(type, fields = {}) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) {
      return Promise.reject(Object.assign(new Error("not connected"), { code: "disconnected" }));
    }
    const requestId = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(requestId, { resolve, reject });
      this.ws.send(JSON.stringify({ type, requestId, ...fields }));
    });
  }

  async attach(sub) {
    try {
      const { subscriptionId } = await this.request("subscribe", { topic: sub.topic, ...sub.filter });
      if (!this.subs.has(sub)) {
        this.request("unsubscribe", { subscriptionId }).catch(() => {});
        return;
      }
      sub.serverId = subscriptionId;
      this.byServerId.set(subscriptionId, sub);
    } catch (error) {
      if (error.code !== "disconnected") console.warn("subscription refused", sub.topic, error.message);
    }
  }

  /**
   * Follow a topic ("presence", "notification", "command", "command_update") with an
   * optional filter ({deviceIds, networkIds, deviceTypeIds, names}). `resync` runs after
   * a reconnect, to re-read what the page may have missed. Returns {close()}.
   */
  subscribe(topic, filter, handler, resync) {
    const sub = { topic, filter: filter || {}, handler, resync, serverId: null };
    this.subs.add(sub);
    if (this.ready) this.attach(sub);
    return {
      close: () => {
        this.subs.delete(sub);
        if (sub.serverId !== null) {
          this.byServerId.delete(sub.serverId);
          this.request("unsubscribe", { subscriptionId: sub.serverId }).catch(() => {});
        }
      },
    };
  }
}
