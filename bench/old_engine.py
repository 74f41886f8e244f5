"""Times the former embedded engine (regopy, rego-cpp) from another checkout, so that
bench.policy_decision can compare it with the Wasm engine in one run.

The regopy engine left the gateway with docs/decisions/0013; to measure it, check out
a commit that still has it (e.g. 9aff1b4) with its own .venv, and pass both:

    python -m bench.policy_decision --old-engine-tree /path/to/checkout

`bench.policy_decision` runs this file with that checkout's Python and on its
``sys.path``; it reads ``{"policy": folder, "inputs": [...], "count": n}`` on stdin
and prints the seconds each decision took, as a JSON list.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any


async def measure(request: dict[str, Any]) -> list[float]:
    from gateway.policy.embedded import EmbeddedEngine  # the checkout's own

    engine = EmbeddedEngine(Path(request["policy"]))
    inputs = request["inputs"]
    for document in inputs * 10:  # warm up
        await engine.evaluate(document)
    samples = []
    for i in range(request["count"]):
        started = time.perf_counter()
        await engine.evaluate(inputs[i % len(inputs)])
        samples.append(time.perf_counter() - started)
    return samples


if __name__ == "__main__":
    print(json.dumps(asyncio.run(measure(json.load(sys.stdin)))))
