// The approvals console: a client of the gateway's REST API (docs/approvals.md), which
// also shows runs of the executor (docs/workflows.md) to holders of executor.viewer_roles.
// The helpers and the security rules it keeps are in common.js.
"use strict";

(() => {
  const { $, el, clear, json, field, showError, ApiError, explain } = window.agwConsole;
  const POLL_MS = 2000;
  const RECENT = 15;
  const RUNS = 20;

  const state = {
    token: null,
    pending: [],
    recent: [],
    definitions: null, // null: not allowed to see them
    runs: [],
    run: null, // the run whose detail is open (#/runs/<id>), refreshed by every poll
    fingerprint: "",
    runsFingerprint: "", // runs re-render on their own, so approval forms keep focus
    drafts: new Map(), // approval id -> reason typed so far (survives re-renders)
    busy: false,
    again: false,
    timer: null,
  };

  // --- helpers ---------------------------------------------------------------------

  function shortHash(hash) {
    return hash ? `${hash.slice(0, 12)}…` : "?";
  }

  function parseTime(text) {
    // Fractions beyond milliseconds are cut: not every Date parser takes microseconds.
    return Date.parse(String(text).replace(/(\.\d{3})\d+/, "$1"));
  }

  // --- messages --------------------------------------------------------------------------

  function notice(text) {
    $("notice").textContent = text;
  }

  // --- the API -------------------------------------------------------------------------

  function api(method, path, body) {
    return window.agwConsole.api(state.token, method, path, body);
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
      const data = await api("GET", "/v1/definitions?status=quarantined");
      state.definitions = data.definitions || [];
    } catch (error) {
      if (!(error instanceof ApiError) || error.status !== 403) throw error;
      state.definitions = null; // an approver of calls who may not approve definitions
    }
    const runs = await api("GET", `/v1/runs?limit=${RUNS}`);
    state.runs = (runs && runs.runs) || [];
    state.run = await loadRun(openRunId());
    const workflows = await api("GET", "/v1/workflows");
    state.workflows = (workflows && workflows.workflows) || [];
  }

  function openRunId() {
    const match = /^#\/runs\/(.+)$/.exec(location.hash);
    return match ? decodeURIComponent(match[1]) : null;
  }

  async function loadRun(id) {
    if (!id) return null;
    try {
      return await api("GET", `/v1/runs/${encodeURIComponent(id)}`);
    } catch (error) {
      if (!(error instanceof ApiError) || error.status !== 404) throw error;
      return { id, missing: explain(error) };
    }
  }

  // --- rendering ---------------------------------------------------------------------

  function timeLeft(expiresAt) {
    const ms = parseTime(expiresAt) - Date.now();
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

  // What a signed-in principal who may not decide sees instead of Approve/Deny: why,
  // as the API says (why_not), so nobody clicks a button the gateway would refuse.
  const WHY_NOT = {
    self_approval: "You may not decide this call: you requested it, or act in its delegation chain.",
    not_an_approver: "You may not decide this call: you hold none of the approvers it needs.",
    approval_not_pending: "This approval is no longer pending.",
  };

  function cannotDecide(a) {
    const why = a.why_not || {};
    return el(
      "p",
      { class: "cannot-decide", role: "note", "data-why-not": why.code || "unknown" },
      el("strong", { text: WHY_NOT[why.code] || "You may not decide this call." }),
      why.message ? ` (${why.message})` : "",
    );
  }

  function decisionForm(a, where) {
    if (!a.may_decide) return cannotDecide(a);
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

  const KIND_NAMES = {
    tool: "Tool",
    prompt: "Prompt",
    resource: "Resource",
    resource_template: "Resource template",
  };

  function definitionCard(d) {
    const titleId = `definition-${d.kind}-${d.name}`;
    const what = `${KIND_NAMES[d.kind] || d.kind} ${d.name}`;
    const approve = d.pinned_in_config
      ? el("p", { class: "hint", text: "Pinned in the config file: change upstreams[].pins to accept it." })
      : el(
          "button",
          {
            type: "button",
            class: "approve",
            onclick: () =>
              act(`Approved the new definition of ${what}`, () =>
                api("POST", "/v1/definitions/approve", {
                  kind: d.kind,
                  name: d.name,
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
        el("h3", { id: titleId }, `${KIND_NAMES[d.kind] || d.kind} `, el("code", { text: d.name })),
        el("p", { text: d.reason || "" }),
        el(
          "dl",
          { class: "facts" },
          field("Upstream", d.upstream || "—"),
          field("Approved", el("code", { text: shortHash(d.definition_hash) })),
          field("New", el("code", { text: shortHash(d.pending_hash) })),
          field("Changed at", d.changed_at),
        ),
        diffView(d.diff),
        approve,
      ),
    );
  }

  // One button per upstream with several pending definitions: approves exactly those
  // shown (the gateway refuses if any changed since this page loaded).
  function upstreamApprovals(definitions) {
    const byUpstream = new Map();
    definitions
      .filter((d) => d.upstream && !d.pinned_in_config)
      .forEach((d) => byUpstream.set(d.upstream, [...(byUpstream.get(d.upstream) || []), d]));
    return [...byUpstream.entries()]
      .filter(([, shown]) => shown.length > 1)
      .map(([upstream, shown]) =>
        el(
          "button",
          {
            type: "button",
            class: "approve",
            onclick: () =>
              act(`Approved ${shown.length} definitions of ${upstream}`, () =>
                api("POST", `/v1/upstreams/${encodeURIComponent(upstream)}/definitions/approve`, {
                  definitions: shown.map((d) => ({
                    kind: d.kind,
                    name: d.name,
                    definition_hash: d.pending_hash,
                  })),
                }),
              ),
          },
          `Approve all ${shown.length} new definitions of ${upstream}`,
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

  // --- runs -------------------------------------------------------------------------

  function statusBadge(status) {
    return el("span", { class: `status ${status}`, text: status });
  }

  function workflowLabel(w) {
    if (!w) return "ad hoc plan";
    const hash = String(w.hash || "").replace(/^sha256:/, "");
    const channel = w.channel ? ` (channel ${w.channel})` : "";
    return [`${w.name}@${w.version}${channel} `, el("code", { title: w.hash, text: shortHash(hash) })];
  }

  function reviewLabel(review) {
    if (!review) return "none asked";
    const link = el("a", { href: `#/approvals/${encodeURIComponent(review.approval_id)}` },
      el("code", { text: review.approval_id }));
    return [`${review.status}: `, link];
  }

  function workflowRow(w) {
    const channels = Object.entries(w.channels || {})
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([channel, version]) => `${channel} → ${version}`)
      .join(", ");
    const latest = (w.versions || [])[(w.versions || []).length - 1] || {};
    return el(
      "tr",
      {},
      el("td", {}, el("code", { text: w.name })),
      el("td", { text: (w.versions || []).map((v) => v.version).join(", ") }),
      el("td", { text: channels || "none" }),
      el("td", { text: latest.published_by ? `${latest.published_by}, ${latest.published_at}` : "" }),
    );
  }

  function renderWorkflows() {
    const rows = $("workflows-rows");
    clear(rows);
    (state.workflows || []).forEach((w) => rows.append(workflowRow(w)));
    const some = (state.workflows || []).length > 0;
    $("workflows").hidden = !some;
    $("workflows-empty").hidden = some;
    $("workflows-count").textContent = `(${(state.workflows || []).length})`;
  }

  function planLabel(r) {
    const hash = String(r.plan_hash || "").replace(/^sha256:/, "");
    return [r.name || "(unnamed)", " ", el("code", { title: r.plan_hash, text: shortHash(hash) })];
  }

  function duration(start, end) {
    if (!start) return "";
    const ms = (end ? parseTime(end) : Date.now()) - parseTime(start);
    if (Number.isNaN(ms)) return "";
    const text = ms < 1000 ? `${Math.max(0, Math.round(ms))} ms` : `${(ms / 1000).toFixed(1)} s`;
    return end ? text : `${text} so far`;
  }

  function runRow(r) {
    return el(
      "tr",
      {},
      el("td", {}, el("a", { href: `#/runs/${encodeURIComponent(r.id)}` }, el("code", { text: r.id }))),
      el("td", { text: r.submitted_by }),
      el("td", {}, statusBadge(r.status)),
      el("td", {}, planLabel(r)),
      el("td", { text: r.started_at || "not yet" }),
      el("td", { text: `${r.steps_done}/${r.steps_total}` }),
    );
  }

  function stepRow(step) {
    const shown = step.output !== null && step.output !== undefined ? step.output : step.error;
    return el(
      "tr",
      {},
      el("td", {}, el("code", { text: step.id })),
      el("td", { text: step.kind }),
      el("td", {}, step.tool ? el("code", { text: step.tool }) : ""),
      el("td", {}, statusBadge(step.status)),
      el("td", { text: String((step.attempts || []).length) }),
      el("td", { text: step.started_at || "" }),
      el("td", { text: step.finished_at || "" }),
      el("td", { text: duration(step.started_at, step.finished_at) }),
      el("td", {}, shown === null || shown === undefined ? "" : el("pre", { text: json(shown) })),
    );
  }

  function renderRun() {
    const run = state.run;
    $("run-detail").hidden = !run;
    const body = $("run-detail-body");
    clear(body);
    if (!run) return;
    if (run.missing) {
      body.append(el("p", { text: run.missing }));
      return;
    }
    const head = ["Step", "Kind", "Tool", "Status", "Attempts", "Started", "Finished", "Took", "Output (redacted)"];
    body.append(
      el("p", {}, "Run ", el("code", { text: run.id }), " is ", el("strong", { text: run.status })),
      el(
        "dl",
        { class: "facts" },
        field("Plan", planLabel(run)),
        field("Workflow", workflowLabel(run.workflow)),
        field("Plan review", reviewLabel(run.review)),
        field("Policy", `${(run.provenance || {}).policy_engine || ""} ${(run.provenance || {}).policy_revision || ""}`),
        field("Submitter", run.submitted_by),
        field("Schedule", run.schedule_id || "none"),
        field("Created", run.created_at || ""),
        field("Started", run.started_at || "not yet"),
        field("Finished", run.finished_at || "not yet"),
        field("Steps done", `${run.steps_done}/${run.steps_total}`),
        run.error ? field("Error", el("pre", { text: json(run.error) })) : null,
      ),
      el(
        "table",
        { "aria-label": `Steps of run ${run.id}` },
        el("thead", {}, el("tr", {}, head.map((h) => el("th", { scope: "col", text: h })))),
        el("tbody", {}, (run.steps || []).map(stepRow)),
      ),
    );
  }

  function renderRuns() {
    const rows = $("runs-rows");
    clear(rows);
    state.runs.forEach((r) => rows.append(runRow(r)));
    $("runs").hidden = state.runs.length === 0;
    $("runs-empty").hidden = state.runs.length > 0;
    $("runs-count").textContent = `(${state.runs.length})`;
    renderRun();
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
    const bulk = $("definitions-bulk");
    clear(bulk);
    upstreamApprovals(shown).forEach((button) => bulk.append(button));
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
      const runsFingerprint = JSON.stringify([state.runs, state.run, state.workflows]);
      if (runsFingerprint !== state.runsFingerprint) {
        state.runsFingerprint = runsFingerprint;
        renderRuns();
        renderWorkflows();
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

  function navigated() {
    renderDetail();
    state.runsFingerprint = "";
    refresh();
  }

  function handle(error, fromPoll) {
    showError(explain(error));
    $("error").dataset.fromPoll = fromPoll ? "1" : "";
    if (error instanceof ApiError && error.status === 401) signOut(false);
  }

  // --- signing in and out --------------------------------------------------------------

  let signOut = () => {};

  document.addEventListener("DOMContentLoaded", () => {
    window.addEventListener("hashchange", navigated);
    setInterval(tick, 1000);
    signOut = window.agwConsole.session({
      signedIn(token) {
        state.token = token;
        state.fingerprint = "";
        state.runsFingerprint = "";
        refresh().then(renderDetail);
        clearInterval(state.timer);
        state.timer = setInterval(refresh, POLL_MS);
      },
      signedOut() {
        state.token = null;
        clearInterval(state.timer);
        state.drafts.clear();
        notice("");
      },
    });
  });
})();
