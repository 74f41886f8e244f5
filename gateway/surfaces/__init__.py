"""Surfaces: the ways in. MCP (`/mcp`, `/mcp/{upstream}`), REST (`/v1`), and the
operational endpoints.

Each surface is a thin adapter: read the caller the middleware authenticated
(`auth.principal_of`), build an `Operation` (or ask for a filtered list), hand it to
the pipeline, render the `Outcome`. The MCP surface is `mcp` (routing between the
direct path, the stateless and the stateful transport), `mcp_server` with
`mcp_handlers` (the handlers of every MCP method, registered) and `mcp_context` (what
a handler reads of the SDK's request context), `mcp_calls` (an operation into the
pipeline, the gateway's own tools), `mcp_views` (the names of `/mcp` and
`/mcp/{upstream}`), `mcp_lists` (the list results, from entries built once per
definition by `wire_forms`, which REST's ``GET /v1/tools`` uses too), `mcp_results`
(outcomes as MCP answers), `mcp_sessions` (sessions bound to their owner),
`mcp_principals` (whom a 2025-11-25 upstream sees a sessionless request from: its
principal's upstream session), `mcp_relay` with `mcp_relay_capabilities` and
`mcp_relay_state` (an upstream's requests for client input put to the calling client;
what the client declared it can be asked; the sealed single-use ``requestState`` of
2026-07-28), `mcp_subscriptions` (resource subscriptions and list changes),
`mcp_tasks` with `mcp_task_creation`, `mcp_task_store`, `mcp_task_states`,
`mcp_task_results`, `mcp_task_input` and `mcp_passthrough` (MCP tasks: approval holds
as tasks, and upstreams' own tasks passed through, each bound to its creator; what a
task is now; what an upstream's task waits for, relayed to its owner),
`mcp_task_streams` with `mcp_task_held_stream` (the ``tasks/result`` of a 2025-11-25
upstream's task the gateway holds for a polling owner, and what waits on it) and
`mcp_direct` (the lean sessionless ``tools/call``). REST is `rest` (tools), `runs`,
`workflows_api`, `approvals_api`, `pins`, `audit_api`, `audit_explorer` and
`audit_proofs`, sharing `rest_io` (bodies as pydantic models, errors as responses) and
merged by path in `routing`, described by `openapi`; `health` is liveness, readiness
and metrics; `console` the approvers' and auditors' pages; `middleware` and `tracing`
the ASGI middleware `app.py` lists. A rule that exists in one surface and not another
is a bug, so no surface makes a security decision of its own.

Invariants: every route is authenticated by `auth.AuthenticationMiddleware` unless its
path is in `auth.PUBLIC_PATHS` (protected by default). Handlers raise `GatewayError`s
instead of building error responses: `auth.error_handler` answers them in one place,
authentication and scope errors with the RFC 6750 / 9728 challenge.
"""
