"""Prometheus metrics, declared once.

Kept in the gateway's own registry rather than the process-global default, so
/metrics shows the gateway's metrics and nothing a library registered.

Under `gateway serve --processes N` the supervisor gives its server processes a
directory in ``PROMETHEUS_MULTIPROC_DIR`` before they import prometheus_client, which
then keeps every value in a file per process there (its multiprocess mode), and
`exposition` adds up the files of every process: a scrape reaching any process sees
the whole serve (docs/decisions/0035). Counters and histograms add up, the files of
dead processes included (a total does not drop when a process is replaced); each gauge
says how (``multiprocess_mode``). Without the variable, as with one process, values
live in memory and a scrape shows this process.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

# Read by prometheus_client when it is imported: set before, or not at all.
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
_MULTIPROCESS_DIR = os.environ.get(MULTIPROCESS_ENV)

REGISTRY = CollectorRegistry(auto_describe=True)

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)

CALLS = Counter(
    "gateway_calls_total",
    "Tool calls by surface and outcome status.",
    ["transport", "status"],
    registry=REGISTRY,
)
DECISION_SECONDS = Histogram(
    "gateway_policy_decision_seconds",
    "Time to obtain a policy decision, failures included.",
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
DECISIONS_WAITING = Gauge(
    "gateway_policy_decisions_waiting",
    "Decisions waiting for an evaluation slot (policy.queue).",
    registry=REGISTRY,
    multiprocess_mode="livesum",
)
POLICY_UNAVAILABLE = Counter(
    "gateway_policy_unavailable_total",
    "Decisions refused because none could be had: none could start in time, or the engine "
    "gave no answer (answered 503, not denied).",
    registry=REGISTRY,
)
CALLS_LIMITED = Counter(
    "gateway_calls_limited_total",
    "Calls policy allowed but a limit refused (answered 429, not forwarded), by the "
    "limit's name and kind (calls or concurrent).",
    ["limit", "kind"],
    registry=REGISTRY,
)
LIMITS_UNAVAILABLE = Counter(
    "gateway_limits_unavailable_total",
    "Calls with limits refused because their counters could not be reached (503).",
    registry=REGISTRY,
)
UPSTREAM_SECONDS = Histogram(
    "gateway_upstream_call_seconds",
    "Time spent in the upstream tool call.",
    ["upstream"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
AUDIT_APPEND_SECONDS = Histogram(
    "gateway_audit_append_seconds",
    "Time to make a call's attempt and decision durable, before it is forwarded.",
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
WITNESS_FAILURES = Counter(
    "gateway_audit_witness_failures_total",
    "Checkpoints a witness did not cosign, by reason: unavailable (unreachable, timed "
    "out), refused (inconsistent with what it cosigned: a fork), invalid (a bad answer).",
    ["witness", "reason"],
    registry=REGISTRY,
)
WITNESS_COSIGNED_SIZE = Gauge(
    "gateway_audit_witness_cosigned_size",
    "The largest tree size each witness is known to have cosigned.",
    ["witness"],
    registry=REGISTRY,
    multiprocess_mode="max",  # still cosigned after the process that saw it died
)

UPSTREAM_SESSIONS = Gauge(
    "gateway_upstream_sessions",
    "Upstream sessions held for callers, opening ones included, by upstream and by whom "
    "they are held for: a 2025-11-25 calling session (held_for=session, "
    "docs/decisions/0034) or the principal of sessionless 2026-07-28 requests "
    "(held_for=principal, docs/decisions/0043).",
    ["upstream", "held_for"],
    registry=REGISTRY,
    multiprocess_mode="livesum",
)
UPSTREAM_SESSIONS_REFUSED = Counter(
    "gateway_upstream_sessions_refused_total",
    "Requests refused because mcp.sessions.max_upstream_sessions upstream sessions were "
    "held (upstream_sessions_exhausted).",
    registry=REGISTRY,
)
UPSTREAM_SESSIONS_EVICTED = Counter(
    "gateway_upstream_sessions_evicted_total",
    "Idle upstream sessions of calling sessions closed to make room for another at "
    "mcp.sessions.max_upstream_sessions (the least recently used first).",
    registry=REGISTRY,
)

TASK_INPUT_STREAMS = Gauge(
    "gateway_task_input_streams",
    "Background tasks/result streams held at 2025-11-25 upstreams, collecting what their "
    "tasks wait for to show it to 2026-07-28 owners (docs/decisions/0044).",
    registry=REGISTRY,
    multiprocess_mode="livesum",
)


# The labelled series of the per-call metrics, looked up once per label values:
# `labels()` validates and locks on every call, and every call records two of them.
@cache
def calls_series(transport: str, status: str) -> Any:
    """`CALLS` for one surface and outcome status."""
    return CALLS.labels(transport, status)


@cache
def upstream_series(upstream: str) -> Any:
    """`UPSTREAM_SECONDS` of one upstream."""
    return UPSTREAM_SECONDS.labels(upstream)


def exposition() -> bytes:
    """What /metrics answers: this process's metrics, or under `--processes N` (a
    multiprocess directory) the sum over every server process of the serve."""
    if _MULTIPROCESS_DIR is None:
        return generate_latest(REGISTRY)
    # A registry per scrape, as prometheus_client's multiprocess mode wants: the
    # collector reads the files of every process, live or dead, each time.
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=_MULTIPROCESS_DIR)
    return generate_latest(registry)
