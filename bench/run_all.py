"""`make bench`: every benchmark, each writing its result to bench/results/.

The comparison (with ContextForge, the bare proxy and the MCP SDK client's figures)
replaces gateway_overhead in this list; `python -m bench.gateway_overhead` still runs
on its own.
"""

from __future__ import annotations

from bench import audit_log, comparison, executor, overload, policy_decision, scaling

BENCHMARKS = [
    comparison.main,
    overload.main,
    scaling.main,
    policy_decision.main,
    audit_log.main,
    executor.main,
]

if __name__ == "__main__":
    for run in BENCHMARKS:
        run()
