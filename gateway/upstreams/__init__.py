"""Upstreams: the tools behind the gateway, and how it talks to them.

Responsibilities, one module each:

- `catalog`: every upstream's tools under one namespace (``<upstream>__<tool>``),
  refreshed, resolved by name, their arguments validated against the input schema.
- `definitions`: a tool's definition and its hash (what pinning compares).
- `pinning`, `pins`: pinned definitions; a changed one is quarantined until approved.
- `base`, `mcp_client` (with `mcp_lean_call`), `http_api`: the clients for MCP servers
  (Streamable HTTP, stdio) and plain HTTP APIs.
- `credentials`: what each upstream receives instead of the agent's token.

Invariants: the agent's token never reaches an upstream (architecture.md §9.3); a
quarantined tool is neither listed nor called; an upstream's `_meta` is never passed
on; stdio commands come from the admin's config only.
"""
