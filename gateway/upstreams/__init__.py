"""Upstreams: what is behind the gateway (tools, prompts, resources), and how it
talks to them.

Responsibilities, one module each:

- `catalog`: everything every upstream offers under one namespace, refreshed (also
  when an upstream says its lists changed), and what an operation acts on resolved
  into a target; `listing`: one upstream's offerings in the gateway's terms.
- `naming`: ``<upstream>__<name>`` and ``gateway:<upstream>/<URI>``.
- `targets`: per MCP method, how a resolved target checks its arguments, what policy
  sees of it, how it is forwarded and what its outcome record adds;
  `log_level_target`: that of ``logging/setLevel``.
- `definitions`, `mcp_definitions`: definitions and their hashes (what pinning
  compares) of tools, and of prompts, resources and templates.
- `pinning`, `pins`, `pin_review`: pinned definitions; a changed one is quarantined
  until approved, alone or with all of its upstream's; `pin_plan`: what a pin becomes
  when a refresh sees its definition.
- `base`, `mcp_client` (with `mcp_offerings`, `mcp_changes`, `mcp_lean_call`),
  `http_api`: the clients for MCP servers (Streamable HTTP, stdio) and plain HTTP
  APIs; `mcp_connection`: an MCP server's supervised connection and the route each
  request takes; `mcp_requests`: one request through the SDK's client, with what rides
  along (the call's headers, deadline, log sink) and its failures as `UpstreamError`s;
  `mcp_client_input`: what an upstream asks of the calling client (elicitation,
  sampling, roots), relayed; `mcp_in_flight`: the requests in flight on one
  connection, for what arrives naming no caller; `mcp_subscriptions`: resource
  subscriptions at an MCP server, shared or a calling session's own;
  `mcp_capabilities`: what a 2026-07-28 upstream is told, per request, the caller can
  be asked; `mcp_upstream_tasks`: an upstream's own tasks (task-augmented calls and
  ``tasks/*``, both eras); `mcp_caller_sessions`: a caller's own upstream session at
  each 2025-11-25 upstream it reaches (a calling session's, or a sessionless request's
  principal's, closed once idle), bounded; `mcp_stdio`: where a stdio upstream's
  process comes from (the SDK's `stdio_client`, for dev mode's demo started ahead of
  the gateway's own build, docs/decisions/0037).
- `credentials`: what each upstream receives instead of the agent's token.

Invariants: the agent's token never reaches an upstream (architecture.md §9.3); a
quarantined definition is neither listed nor used; an upstream's `_meta` is never
passed on; a resource is routed by its gateway URI's prefix, never guessed; what an
upstream sends or asks during a request reaches only the client that made it (a
request naming no caller goes to the one request in flight, else is refused; roots are
never answered on a shared handshake-era connection, and what a calling session's own
upstream session asks or sends is that session's alone); stdio commands come from the
admin's config only.
"""
