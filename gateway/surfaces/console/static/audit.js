// The audit explorer: a read-only client of GET /v1/audit/entries and
// GET /v1/audit/entries/{seq} (docs/audit.md). It shows what the gateway found when it
// checked each entry against its latest checkpoint; the receipt it shows is what an
// auditor re-checks offline. The helpers and the security rules it keeps are in
// common.js. It reads on demand: no polling.
"use strict";

(() => {
  const { $, el, clear, json, field, showError, ApiError, explain } = window.agwConsole;
  const FILTERS = ["principal", "tool", "kind", "ref"];

  const state = {
    token: null,
    query: null, // URLSearchParams of the last search, without the cursor
    entries: [],
    cursor: null,
  };

  function api(path) {
    return window.agwConsole.api(state.token, "GET", path);
  }

  // --- the filter form ---------------------------------------------------------------

  // A datetime-local value is the browser's local time; the API takes RFC 3339.
  function rfc3339(value) {
    if (!value) return null;
    const moment = new Date(value);
    if (Number.isNaN(moment.getTime())) throw new ApiError(400, "", `${value} is not a time`);
    return moment.toISOString();
  }

  function queryFromForm() {
    const query = new URLSearchParams();
    for (const name of ["since", "until"]) {
      const value = rfc3339($(`f-${name}`).value);
      if (value) query.set(name, value);
    }
    for (const name of FILTERS) {
      const value = $(`f-${name}`).value.trim();
      if (value) query.set(name, value);
    }
    query.set("limit", $("f-limit").value);
    return query;
  }

  // --- rendering ---------------------------------------------------------------------

  const VERDICT = { verified: "verified", pending: "pending", failed: "FAILED" };

  function verdictBadge(verification) {
    return el("span", {
      class: `status ${verification.status}`,
      title: verification.reason || "",
      text: VERDICT[verification.status] || verification.status,
    });
  }

  function payloadText(entry) {
    if (entry.payload_status === "erased") return `erased (entry ${entry.erasure_seq})`;
    return entry.payload_status;
  }

  function entryLink(seq) {
    return el("a", { href: `#/entries/${seq}`, "aria-label": `Entry ${seq}` }, String(seq));
  }

  function resultRow(entry) {
    return el(
      "tr",
      {},
      el("td", {}, entryLink(entry.seq)),
      el("td", { text: entry.ts }),
      el("td", {}, el("code", { text: entry.kind })),
      el("td", {}, el("code", { text: entry.ref })),
      el("td", { text: entry.principal || "" }),
      el("td", {}, entry.tool ? el("code", { text: entry.tool }) : ""),
      el("td", { text: payloadText(entry) }),
      el("td", {}, verdictBadge(entry.verification)),
    );
  }

  function checkpointLine(checkpoint) {
    if (!checkpoint) return "No checkpoint yet: every entry is pending.";
    return `Checked against the latest checkpoint: ${checkpoint.size} entries, signed ${checkpoint.ts}.`;
  }

  function renderResults(checkpoint) {
    const rows = $("results-rows");
    clear(rows);
    state.entries.forEach((entry) => rows.append(resultRow(entry)));
    $("results").hidden = state.entries.length === 0;
    $("results-empty").hidden = state.entries.length > 0;
    $("results-count").textContent = `(${state.entries.length}${state.cursor ? "+" : ""})`;
    $("checked-against").textContent = checkpointLine(checkpoint);
    $("older").hidden = !state.cursor;
  }

  function verdict(entry) {
    const v = entry.verification;
    let text;
    if (v.status === "verified") {
      text =
        `Verified: intact, and included in the checkpoint of ${entry.proof.tree_size} ` +
        "entries, which a registered key of this gateway signed.";
    } else if (v.status === "pending") {
      text = `Pending: ${v.reason}. Nothing found wrong so far.`;
    } else {
      text = `Verification FAILED: ${v.reason}${v.code ? ` (${v.code})` : ""}`;
    }
    return el("p", { class: `verdict ${v.status}`, role: "status", text });
  }

  // The leaf bytes are canonical JSON (UTF-8): shown as text too, for reading.
  function leafText(base64) {
    const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
    return new TextDecoder().decode(bytes);
  }

  function proofFacts(proof) {
    if (!proof) return el("p", { class: "empty", text: "No inclusion proof: see the status above." });
    return el(
      "dl",
      { class: "facts" },
      field("Leaf index", String(proof.leaf_index)),
      field("Tree size", String(proof.tree_size)),
      field("Root (base64)", el("code", { text: proof.root })),
      field(
        `Proof hashes (${proof.hashes.length}, base64, leaf's sibling first)`,
        proof.hashes.length
          ? el("ol", { class: "hashes" }, proof.hashes.map((h) => el("li", {}, el("code", { text: h }))))
          : "none (the tree has one leaf)",
      ),
    );
  }

  function checkpointFacts(checkpoint) {
    if (!checkpoint) return el("p", { class: "empty", text: "The log has no checkpoint yet." });
    return el(
      "dl",
      { class: "facts" },
      field("Tree size", String(checkpoint.size)),
      field("Root (base64)", el("code", { text: checkpoint.root })),
      field("Signed at", checkpoint.ts),
      field("Signed note", el("pre", { text: checkpoint.note })),
    );
  }

  function renderEntry(entry) {
    const body = $("entry-body");
    clear(body);
    $("entry-title").textContent = `Entry ${entry.seq}`;
    body.append(
      verdict(entry),
      el(
        "dl",
        { class: "facts" },
        field("Seq", String(entry.seq)),
        field("Time (UTC)", entry.ts),
        field("Kind", el("code", { text: entry.kind })),
        field("Ref", el("code", { text: entry.ref })),
        field("Principal", entry.principal || "—"),
        field("Tool", entry.tool ? el("code", { text: entry.tool }) : "—"),
        field("Leaf hash (hex)", el("code", { text: entry.leaf_hash })),
        field(
          "Payload",
          entry.payload_status === "erased"
            ? ["erased, by ", entryLink(entry.erasure_seq)]
            : entry.payload_status,
        ),
      ),
      el("h3", { text: "Payload" }),
      entry.payload === null
        ? el("p", { class: "empty", text: "(no payload: only its commitment is in the leaf)" })
        : el("pre", { class: "payload", "aria-label": "Payload", text: json(entry.payload) }),
      el("h3", { text: "Inclusion proof" }),
      proofFacts(entry.proof),
      el("h3", { text: "Checkpoint" }),
      checkpointFacts(entry.checkpoint),
      entry.proof ? el("h3", { text: "Receipt (C2SP tlog-proof)" }) : null,
      entry.proof ? el("pre", { "aria-label": "Receipt", text: entry.proof.receipt }) : null,
      el("h3", { text: "Leaf (the entry as hashed into the log)" }),
      el("pre", { "aria-label": "Leaf", text: leafText(entry.leaf) }),
      el("pre", { "aria-label": "Leaf in base64", text: entry.leaf }),
      el(
        "p",
        { class: "hint" },
        "This gateway checked its own log with its own keys: a convenience, not proof. ",
        "For that, save the receipt to a file and the leaf with ",
        el("code", { text: "base64 -d > leaf" }),
        ", run ",
        el("code", { text: "gateway audit verify-receipt receipt --key KEY --leaf leaf" }),
        " with the log's key obtained out of band, and compare the checkpoint with one you keep.",
      ),
    );
  }

  // --- loading -----------------------------------------------------------------------

  // Every search counts: an answer that arrives after a newer search was started (the
  // form's Clear searches too) is dropped, so stale results never replace newer ones.
  let searches = 0;

  async function search(query) {
    const mine = ++searches;
    const page = await api(`/v1/audit/entries?${query}`);
    if (mine !== searches) return;
    state.query = query;
    state.entries = page.entries;
    state.cursor = page.next_cursor;
    renderResults(page.checkpoint);
    $("updated").textContent = `Searched ${new Date().toLocaleTimeString()}`;
  }

  async function older() {
    const mine = searches;
    const query = new URLSearchParams(state.query);
    query.set("cursor", state.cursor);
    const page = await api(`/v1/audit/entries?${query}`);
    if (mine !== searches) return;
    state.entries = state.entries.concat(page.entries);
    state.cursor = page.next_cursor;
    renderResults(page.checkpoint);
  }

  function openSeq() {
    const match = /^#\/entries\/(\d+)$/.exec(location.hash);
    return match ? match[1] : null;
  }

  async function showEntry() {
    const seq = openSeq();
    $("entry").hidden = !seq;
    if (!seq) return;
    clear($("entry-body"));
    $("entry-title").textContent = `Entry ${seq}`;
    try {
      renderEntry(await api(`/v1/audit/entries/${seq}`));
      $("entry").scrollIntoView();
    } catch (error) {
      $("entry-body").append(el("p", { text: explain(error) }));
      if (error instanceof ApiError && error.status === 401) signOut(false);
    }
  }

  async function run(action) {
    showError("");
    try {
      await action();
    } catch (error) {
      handle(error);
    }
  }

  function handle(error) {
    showError(explain(error));
    if (error instanceof ApiError && error.status === 401) signOut(false);
  }

  // --- signing in and out --------------------------------------------------------------

  let signOut = () => {};

  document.addEventListener("DOMContentLoaded", () => {
    $("filters").addEventListener("submit", (event) => {
      event.preventDefault();
      run(() => search(queryFromForm()));
    });
    // After the form has reset its fields: search everything again.
    $("filters").addEventListener("reset", () => setTimeout(() => run(() => search(queryFromForm()))));
    $("older").addEventListener("click", () => run(older));
    window.addEventListener("hashchange", showEntry);
    signOut = window.agwConsole.session({
      signedIn(token) {
        state.token = token;
        run(() => search(queryFromForm()));
        showEntry();
      },
      signedOut() {
        state.token = null;
        state.entries = [];
      },
    });
  });
})();
