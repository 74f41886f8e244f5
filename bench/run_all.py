"""`make bench`: every benchmark, each writing its result to bench/results/."""

from __future__ import annotations

from bench import gateway_overhead

BENCHMARKS = [gateway_overhead.main]

if __name__ == "__main__":
    for run in BENCHMARKS:
        run()
