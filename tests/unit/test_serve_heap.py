"""A started server process settles its heap (gateway.cli.serve_process.settle_heap):
what the start built is frozen out of the garbage collector, and young collections
run less often (docs/decisions/0039). In a fresh interpreter: the test process's own
collector is left alone."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import gc
from gateway.cli.serve_process import GC_YOUNG_THRESHOLD, settle_heap
before = gc.get_threshold()
settle_heap()
after = gc.get_threshold()
assert gc.get_freeze_count() > 1000, gc.get_freeze_count()
assert after == (GC_YOUNG_THRESHOLD, before[1], before[2]), (before, after)
# Cycles made after the start are still collected.
class Node:
    pass
node = Node()
node.self = node
del node
assert gc.collect() >= 1
print("ok")
"""


def test_settle_heap_freezes_the_start_and_keeps_collecting_cycles() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
