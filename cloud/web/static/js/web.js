// The small layer every screen uses: calling the JSON API with the session cookie, building DOM
// elements, formatting times, and the live feed (GET /api/v1/live). No framework, no build step.
"use strict";

const Web = (() => {
  // Every request that changes something carries this header: the API refuses cookie-authenticated
  // POST/PUT/PATCH/DELETE without it (the CSRF guard, docs/web.md).
  const CSRF_HEADER = { "X-Requested-With": "community-web" };

  class ApiFailure extends Error {
    constructor(status, reason) {
      super(reason);
      this.status = status;
    }
  }

  function toLogin() {
    window.location.assign("/login?next=" + encodeURIComponent(window.location.pathname));
  }

  // method, path, and a JSON body (or FormData for uploads); answers the parsed JSON (or null).
  async function api(method, path, body) {
    const init = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
    if (method !== "GET") Object.assign(init.headers, CSRF_HEADER);
    if (body instanceof FormData) {
      init.body = body;
    } else if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const resp = await fetch(path, init);
    if (resp.status === 401) {
      toLogin();
      throw new ApiFailure(401, "logged out");
    }
    const text = await resp.text();
    const data = text ? JSON.parse(text) : null;
    if (!resp.ok) throw new ApiFailure(resp.status, (data && data.error) || resp.statusText);
    return data;
  }

  // el("li", {class: "x", dataset: {id: 3}, onclick: f}, "text", child, ...)
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "dataset") Object.assign(node.dataset, value);
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children.flat()) {
      if (child === undefined || child === null || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  const dayFormat = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric" });

  // "14:03:07" today, "Nov 24 14:03:07" on another day
  function when(iso) {
    if (!iso) return "";
    const at = new Date(iso);
    const today = new Date().toDateString() === at.toDateString();
    return (today ? "" : dayFormat.format(at) + " ") + timeFormat.format(at);
  }

  // fn runs at most once per `ms`; calls in between are folded into one trailing call
  function throttle(fn, ms) {
    let last = 0;
    let timer = null;
    return () => {
      const wait = last + ms - Date.now();
      if (wait <= 0) {
        last = Date.now();
        fn();
      } else if (timer === null) {
        timer = setTimeout(() => {
          timer = null;
          last = Date.now();
          fn();
        }, wait);
      }
    };
  }

  // The live feed. `handlers` maps an event's kind to a function of the event; `reload` runs when the
  // screen must reload everything from the API: after a reconnect (events may have been missed) and
  // on `resync` (this client fell behind). Shows the feed's state in the top bar.
  function live(handlers, reload) {
    const badge = document.getElementById("live-state");
    const show = (state, text) => {
      if (!badge) return;
      badge.dataset.state = state;
      badge.textContent = text;
    };
    let greeted = false;
    show("connecting", "connecting…");
    const source = new EventSource("/api/v1/live");
    source.onmessage = (message) => {
      const event = JSON.parse(message.data);
      if (event.kind === "hello") {
        show("live", "live");
        if (greeted) reload();
        greeted = true;
        return;
      }
      if (event.kind === "resync") {
        reload();
        return;
      }
      const handler = handlers[event.kind];
      if (handler) handler(event);
    };
    source.onerror = async () => {
      show("down", "reconnecting…");
      if (source.readyState === EventSource.CLOSED) {
        // the server refused the stream: most likely the login ran out
        try {
          await api("GET", "/api/v1/me");
        } catch (err) {
          return;
        }
        setTimeout(() => live(handlers, reload), 2000);
      }
    };
    return source;
  }

  return { api, ApiFailure, el, when, throttle, live };
})();
