"""The agent gateway: every agent tool call and MCP request passes through it, is
authenticated, decided by policy, held for a human where policy says so, forwarded
under the gateway's own credentials, and recorded in a verifiable audit log.

The folders are the layers of docs/architecture.md §3, lowest first; a module imports
only from its own layer or below (`tests/unit/test_layers.py`): the vocabulary
(`types`, `operations`, `errors`, `config`, …), `tlog` (the log's published formats and
their offline verification), `witness`, `store`, `identity`, `audit`, `policy`,
`upstreams` with `approvals` and `limits`, the one call path (`pipeline`, `lists`,
`relays`), `executor`, `workflows`, `surfaces` (the ways in), and the wiring on top
(`components`, `app`, `cli`, `dev`).

Invariants the layers keep together (architecture.md §2, §9): nothing is forwarded
until the attempt and the decision are durable in the audit log; only an
unconditional allow, or an allow whose approval a human gave and the log holds, is
forwarded; whatever cannot be decided (an engine down, a deadline missed, the log
unavailable) is refused as unavailable, never as a denial and never allowed.
"""
