"""Surfaces: the ways in. MCP (`/mcp`), REST (`/v1`), and the operational endpoints.

Each surface is a thin adapter: authenticate with the shared `Authenticator`, build a
`ToolCall`, hand it to the pipeline, render the `Outcome`. A rule that exists in one
surface and not another is a bug, so no surface makes a security decision of its own.

REST handlers are wrapped by `auth.authenticated` and raise `GatewayError`s instead of
building error responses: it answers them in one place (`rest_io`), authentication
and scope errors with the RFC 6750 / 9728 challenge.
"""
