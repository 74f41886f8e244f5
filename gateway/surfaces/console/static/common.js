// What the console's pages share: the approvals and runs page (console.js) and the
// audit explorer (audit.js). Loaded before either, it defines window.agwConsole.
//
// Security rules every page keeps:
// - every value from the server is put on the page with textContent or as an
//   attribute value, never parsed as HTML (no innerHTML anywhere);
// - the token lives in sessionStorage only and travels as an Authorization header,
//   never in a URL or a cookie;
// - no inline script or style (the page's Content-Security-Policy forbids both).
"use strict";

window.agwConsole = (() => {
  // One key for every page: signing in on one signs the tab in on all of them.
  const TOKEN_KEY = "agw.console.token";

  const $ = (id) => document.getElementById(id);

  // --- DOM helpers: text only ---------------------------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  function json(value) {
    return JSON.stringify(value, null, 2);
  }

  function field(label, ...value) {
    return [el("dt", { text: label }), el("dd", {}, ...value)];
  }

  // --- messages --------------------------------------------------------------------------

  function showError(text) {
    const box = $("error");
    box.textContent = text;
    box.hidden = !text;
  }

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  function explain(error) {
    if (!(error instanceof ApiError)) return `The gateway could not be reached: ${error.message}`;
    const what = `${error.message}${error.code ? ` (${error.code})` : ""}`;
    if (error.status === 401) return `Your token was not accepted: ${what}. Sign in again.`;
    if (error.status === 403) return `Not allowed: ${what}`;
    if (error.status === 409) return `Conflict: ${what}. The list has been refreshed.`;
    return `Error ${error.status}: ${what}`;
  }

  // --- the API -------------------------------------------------------------------------

  async function api(token, method, path, body) {
    const headers = { Authorization: `Bearer ${token}`, Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
      credentials: "omit",
    });
    let data = null;
    try {
      data = await response.json();
    } catch (_) {
      data = null;
    }
    if (!response.ok) {
      const error = (data && data.error) || {};
      throw new ApiError(response.status, error.code || "", error.message || response.statusText);
    }
    return data;
  }

  // --- the token -----------------------------------------------------------------------

  // The token's claims, only to greet the user: the gateway verifies it, not this page.
  function claims(token) {
    try {
      const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      return JSON.parse(atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), "=")));
    } catch (_) {
      return {};
    }
  }

  function greeting(token) {
    const c = claims(token);
    const roles = Array.isArray(c.roles) ? c.roles.join(", ") : c.roles || "none";
    return `Signed in as ${c.sub || "?"} (roles: ${roles})`;
  }

  // --- signing in and out: the same on every page ------------------------------------

  // Wires the sign-in form and the sign-out button, then signs in with the tab's saved
  // token, if any. `page.signedIn(token)` and `page.signedOut()` do the page's own
  // part. Returns signOut(clearError), for a page whose token the gateway refused.
  function session(page) {
    function signedIn(token) {
      $("who").textContent = greeting(token);
      $("sign-in").hidden = true;
      $("app").hidden = false;
      $("sign-out").hidden = false;
      page.signedIn(token);
    }

    function signOut(clearError) {
      sessionStorage.removeItem(TOKEN_KEY);
      page.signedOut();
      $("who").textContent = "";
      $("updated").textContent = "";
      $("sign-in").hidden = false;
      $("app").hidden = true;
      $("sign-out").hidden = true;
      if (clearError) showError("");
    }

    $("sign-in-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const token = $("token").value.trim();
      if (!token) {
        showError("Paste a token first.");
        return;
      }
      $("token").value = "";
      showError("");
      sessionStorage.setItem(TOKEN_KEY, token);
      signedIn(token);
    });
    $("sign-out").addEventListener("click", () => signOut(true));
    const saved = sessionStorage.getItem(TOKEN_KEY);
    if (saved) signedIn(saved);
    return signOut;
  }

  return Object.freeze({
    TOKEN_KEY,
    $,
    el,
    clear,
    json,
    field,
    showError,
    ApiError,
    explain,
    api,
    greeting,
    session,
  });
})();
