// The approvals console: a client of the gateway's REST API (docs/approvals.md).
//
// Security rules this file keeps:
// - every value from the server is put on the page with textContent or as an
//   attribute value, never parsed as HTML (no innerHTML anywhere);
// - the token lives in sessionStorage only and travels as an Authorization header,
//   never in a URL or a cookie;
// - no inline script or style (the page's Content-Security-Policy forbids both).
"use strict";

(() => {
  const TOKEN_KEY = "agw.console.token";
  const POLL_MS = 2000;
  const RECENT = 15;

  const $ = (id) => document.getElementById(id);
  const state = {
    token: null,
    pending: [],
    recent: [],
    definitions: null, // null: not allowed to see them
    fingerprint: "",
    drafts: new Map(), // approval id -> reason typed so far (survives re-renders)
    busy: false,
    again: false,
    timer: null,
  };

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

  function shortHash(hash) {
    return hash ? `${hash.slice(0, 12)}…` : "?";
  }

  // --- messages --------------------------------------------------------------------------

  function showError(text) {
    const box = $("error");
    box.textContent = text;
    box.hidden = !text;
  }

  function notice(text) {
    $("notice").textContent = text;
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

  async function api(method, path, body) {
    const headers = { Authorization: `Bearer ${state.token}`, Accept: "application/json" };
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

  function approvalsOf(data) {
    return Array.isArray(data) ? data : (data && data.approvals) || [];
  }

  async function load() {
    const [pending, all] = await Promise.all([
      api("GET", "/v1/approvals?status=pending"),
      api("GET", "/v1/approvals"),
    ]);
    state.pending = approvalsOf(pending).filter((a) => a.status === "pending");
    state.recent = approvalsOf(all)
      .filter((a) => a.status !== "pending")
      .sort((a, b) => String(b.decided_at || b.created_at).localeCompare(a.decided_at || a.created_at))
      .slice(0, RECENT);
    try {
      const data = await api("GET", "/v1/tools/definitions?status=quarantined");
      state.definitions = data.definitions || [];
    } catch (error) {
      if (!(error instanceof ApiError) || error.status !== 403) throw error;
      state.definitions = null; // an approver of calls who may not approve definitions
    }
  }

  // --- rendering ---------------------------------------------------------------------

  function timeLeft(expiresAt) {
    // Fractions beyond milliseconds are cut: not every Date parser takes microseconds.
    const ms = Date.parse(String(expiresAt).replace(/(\.\d{3})\d+/, "$1")) - Date.now();
    if (Number.isNaN(ms)) return "unknown";
    if (ms <= 0) return "expired";
    const s = Math.floor(ms / 1000);
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    const pad = (n) => String(n).padStart(2, "0");
    return h > 0 ? `${h}:${pad(m)}:${pad(s % 60)}` : `${m}:${pad(s % 60)}`;
  }

  function tick() {
    for (const node of document.querySelectorAll("[data-expires]")) {
      node.textContent = timeLeft(node.dataset.expires);
    }
  }

  function chainText(requester) {
    const chain = (requester && requester.act_chain) || [];
    return chain.length ? chain.map((a) => a.sub).join(" → ") : "none (acting directly)";
  }

  function field(label, ...value) {
    return [el("dt", { text: label }), el("dd", {}, ...value)];
  }

  function approvalFacts(a) {
    return el(
      "dl",
      { class: "facts" },
      field("Requester", a.requester ? a.requester.sub : "?"),
      field("Delegation chain", chainText(a.requester)),
      field("Tool", el("code", { text: a.tool })),
      field("Arguments (redacted)", el("pre", { class: "args", text: json(a.arguments) })),
      field("Reasons", el("ul", {}, (a.reasons || []).map((r) => el("li", { text: r })))),
      field("Approvers", (a.approvers || []).join(", ") || "any approver"),
      field(
        "Time left",
        el("span", { class: "countdown", "data-expires": a.expires_at, text: timeLeft(a.expires_at) }),
      ),
    );
  }

  function decisionForm(a, where) {
    const inputId = `reason-${where}-${a.id}`;
    const input = el("input", {
      id: inputId,
      type: "text",
      maxlength: 1000,
      autocomplete: "off",
      oninput: (event) => state.drafts.set(a.id, event.target.value),
    });
    input.value = state.drafts.get(a.id) || "";
    const decide = (verb) => async (event) => {
      event.preventDefault();
      const reason = input.value.trim();
      if (verb === "deny" && !reason) {
        showError("A reason is required to deny.");
        input.focus();
        return;
      }
      await act(`${verb === "approve" ? "Approved" : "Denied"} ${a.id} (${a.tool})`, () =>
        api("POST", `/v1/approvals/${encodeURIComponent(a.id)}/${verb}`, {
          reason: reason || null,
          channel: "console",
        }),
      );
      state.drafts.delete(a.id);
    };
    return el(
      "form",
      { class: "decide", onsubmit: (event) => event.preventDefault() },
      el("label", { for: inputId, text: "Reason (required to deny)" }),
      input,
      el("button", { type: "button", class: "approve", onclick: decide("approve") }, "Approve"),
      el("button", { type: "button", class: "deny", onclick: decide("deny") }, "Deny"),
    );
  }

  function approvalCard(a) {
    const titleId = `approval-${a.id}`;
    return el(
      "li",
      {},
      el(
        "article",
        { class: "card", "aria-labelledby": titleId },
        el("h3", { id: titleId }, el("code", { text: a.tool }), " requested by ", a.requester.sub),
        approvalFacts(a),
        decisionForm(a, "list"),
        el("a", { href: `#/approvals/${encodeURIComponent(a.id)}` }, "Details"),
      ),
    );
  }

  function diffView(text) {
    const lines = String(text || "").split("\n");
    return el(
      "pre",
      { class: "diff", "aria-label": "Unified diff of the approved and the new definition" },
      lines.map((line) => {
        let kind = "same";
        if (line.startsWith("+++") || line.startsWith("---")) kind = "file";
        else if (line.startsWith("@@")) kind = "hunk";
        else if (line.startsWith("+")) kind = "add";
        else if (line.startsWith("-")) kind = "del";
        return el("span", { class: `line ${kind}`, text: `${line}\n` });
      }),
    );
  }

  function definitionCard(d) {
    const titleId = `definition-${d.tool}`;
    const approve = d.pinned_in_config
      ? el("p", { class: "hint", text: "Pinned in the config file: change upstreams[].pins to accept it." })
      : el(
          "button",
          {
            type: "button",
            class: "approve",
            onclick: () =>
              act(`Approved the new definition of ${d.tool}`, () =>
                api("POST", `/v1/tools/${encodeURIComponent(d.tool)}/definition/approve`, {
                  definition_hash: d.pending_hash,
                }),
              ),
          },
          "Approve new definition",
        );
    return el(
      "li",
      {},
      el(
        "article",
        { class: "card", "aria-labelledby": titleId },
        el("h3", { id: titleId }, el("code", { text: d.tool })),
        el("p", { text: d.reason || "" }),
        el(
          "dl",
          { class: "facts" },
          field("Approved", el("code", { text: shortHash(d.definition_hash) })),
          field("New", el("code", { text: shortHash(d.pending_hash) })),
          field("Changed at", d.changed_at),
        ),
        diffView(d.diff),
        approve,
      ),
    );
  }

  function recentRow(a) {
    return el(
      "tr",
      {},
      el("td", { text: a.decided_at || a.created_at }),
      el("td", {}, el("span", { class: `status ${a.status}`, text: a.status })),
      el("td", {}, el("code", { text: a.tool })),
      el("td", { text: a.requester ? a.requester.sub : "?" }),
      el("td", { text: a.decided_by || "" }),
      el("td", { text: a.decision_reason || "" }),
    );
  }

  function render() {
    const pending = $("pending");
    clear(pending);
    state.pending.forEach((a) => pending.append(approvalCard(a)));
    $("pending-empty").hidden = state.pending.length > 0;
    $("pending-count").textContent = `(${state.pending.length})`;

    const definitions = $("definitions");
    clear(definitions);
    const shown = state.definitions || [];
    shown.forEach((d) => definitions.append(definitionCard(d)));
    $("definitions-unavailable").hidden = state.definitions !== null;
    $("definitions-empty").hidden = state.definitions === null || shown.length > 0;
    $("definitions-count").textContent = state.definitions === null ? "" : `(${shown.length})`;

    const rows = $("recent-rows");
    clear(rows);
    state.recent.forEach((a) => rows.append(recentRow(a)));
    $("recent").hidden = state.recent.length === 0;
    $("recent-empty").hidden = state.recent.length > 0;
  }

  async function renderDetail() {
    const match = /^#\/approvals\/(.+)$/.exec(location.hash);
    $("detail").hidden = !match;
    if (!match) return;
    const body = $("detail-body");
    clear(body);
    try {
      const a = await api("GET", `/v1/approvals/${encodeURIComponent(decodeURIComponent(match[1]))}`);
      body.append(
        el("p", {}, "Approval ", el("code", { text: a.id }), " is ", el("strong", { text: a.status })),
        approvalFacts(a),
        a.status === "pending" ? decisionForm(a, "detail") : null,
        el("pre", { class: "args", "aria-label": "The whole approval record", text: json(a) }),
      );
    } catch (error) {
      body.append(el("p", { text: explain(error) }));
    }
  }

  // --- refresh loop and actions ------------------------------------------------------

  async function refresh() {
    if (!state.token) return;
    if (state.busy) {
      state.again = true; // the poll in flight may have read the state before a change
      return;
    }
    state.busy = true;
    state.again = false;
    try {
      await load();
      const fingerprint = JSON.stringify([state.pending, state.recent, state.definitions]);
      // Re-render only on change, so focus and half-typed reasons survive the polling.
      if (fingerprint !== state.fingerprint) {
        state.fingerprint = fingerprint;
        render();
      }
      $("updated").textContent = `Updated ${new Date().toLocaleTimeString()}`;
      if ($("error").dataset.fromPoll) showError("");
    } catch (error) {
      handle(error, true);
    } finally {
      state.busy = false;
    }
    if (state.again) await refresh();
  }

  async function act(done, call) {
    showError("");
    try {
      await call();
      notice(done);
    } catch (error) {
      handle(error, false);
    }
    state.fingerprint = "";
    await refresh();
    await renderDetail();
  }

  function handle(error, fromPoll) {
    showError(explain(error));
    $("error").dataset.fromPoll = fromPoll ? "1" : "";
    if (error instanceof ApiError && error.status === 401) signOut(false);
  }

  // --- signing in and out --------------------------------------------------------------

  function claims(token) {
    try {
      const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      return JSON.parse(atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), "=")));
    } catch (_) {
      return {};
    }
  }

  function signedIn(token) {
    state.token = token;
    const c = claims(token);
    const roles = Array.isArray(c.roles) ? c.roles.join(", ") : c.roles || "none";
    $("who").textContent = `Signed in as ${c.sub || "?"} (roles: ${roles})`;
    $("sign-in").hidden = true;
    $("app").hidden = false;
    $("sign-out").hidden = false;
    state.fingerprint = "";
    refresh().then(renderDetail);
    clearInterval(state.timer);
    state.timer = setInterval(refresh, POLL_MS);
  }

  function signOut(clearError) {
    sessionStorage.removeItem(TOKEN_KEY);
    state.token = null;
    clearInterval(state.timer);
    state.drafts.clear();
    $("who").textContent = "";
    $("updated").textContent = "";
    notice("");
    $("sign-in").hidden = false;
    $("app").hidden = true;
    $("sign-out").hidden = true;
    if (clearError) showError("");
  }

  document.addEventListener("DOMContentLoaded", () => {
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
    window.addEventListener("hashchange", renderDetail);
    setInterval(tick, 1000);
    const saved = sessionStorage.getItem(TOKEN_KEY);
    if (saved) signedIn(saved);
  });
})();
