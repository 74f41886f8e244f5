"""`make bench`: every benchmark, each writing its result to bench/results/."""

from __future__ import annotations

from bench import audit_log, executor, gateway_overhead, policy_decision

BENCHMARKS = [gateway_overhead.main, policy_decision.main, audit_log.main, executor.main]

if __name__ == "__main__":
    for run in BENCHMARKS:
        run()
