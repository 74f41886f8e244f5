"""Where the gateway's CPU goes at c=16: a py-spy profile, weighted by thread CPU.

py-spy (``record --format raw --threads``: one line per distinct stack, ``thread
(TID): name;frame;frame;… count``, root first) samples the gateway's threads while
the raw client keeps 16 calls in flight. Each sample is given to the *innermost* frame
that belongs to a known area (`AREAS`; for one frame the first match wins), walking
from the leaf towards the root: a standard-library leaf (json, hashlib…) counts for
the code that called it, and the C code below a Python frame (rego-cpp, SQLite) for
that frame. Frames of the gateway not named by an area are "other (gateway glue)".

Samples are not CPU: a thread just woken from a lock, or waiting for the GIL or a
core on a busy machine, is sampled as active. So each thread's *measured* CPU over the
window (utime + stime of /proc/<pid>/task/<tid>) is shared among the areas of its own
samples, leaving out samples that sit at a lock or queue wait (`WAIT_LEAVES`); CPU of
a thread with no other sample is "unattributed". Divided by the calls of the window,
that is milliseconds of CPU per call by area.

py-spy needs ptrace on the target (root, or CAP_SYS_PTRACE; checked on this machine).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import anyio

from bench import load, proc_cpu
from bench.clients import raw_caller
from bench.methods import Method
from bench.targets import Target

# (area, substrings of a frame's "function (file:line)" text). Order matters: the
# first area whose pattern a frame matches names that frame.
AREAS: list[tuple[str, tuple[str, ...]]] = [
    ("policy", ("regopy", "gateway/policy/")),
    ("audit", ("gateway/audit/", "rfc8785", "gateway/canonical.py", "sqlite3", "gateway/store/")),
    ("JWT", ("jwt/", "gateway/identity/", "cryptography/")),
    ("upstream client", ("gateway/upstreams/", "gateway/http_client.py")),
    ("logging/metrics", ("logging/", "prometheus_client", "gateway/logs.py", "gateway/metrics.py")),
    ("MCP SDK/pydantic", ("mcp/", "mcp_types", "pydantic", "jsonschema", "gateway/surfaces/mcp")),
    (
        "HTTP/ASGI",
        (
            "uvicorn",
            "starlette",
            "httptools",
            "uvloop",
            "anyio/",
            "asyncio/",
            "gateway/surfaces/",
            "gateway/app.py",
        ),
    ),
    ("other (gateway glue)", ("gateway/",)),
]
OTHER = "other"
# Leaves at which a sampled thread is waiting, not running: a thread blocked on a lock
# or a queue (the audit writer between batches, anyio's worker threads) can be sampled
# as active in --nonblocking mode. These samples are counted apart, not in an area.
WAITING = "waiting"
WAIT_LEAVES = (
    "Condition.wait (threading.py",
    "Event.wait (threading.py",
    "Thread.join (threading.py",
    "_worker (concurrent/futures/thread.py",
    "Queue.get (queue.py",
    "select (selectors.py",
)
_LINE = re.compile(r"^(?P<stack>.*) (?P<count>\d+)$")


def area_of(frame: str) -> str | None:
    for area, patterns in AREAS:
        if any(p in frame for p in patterns):
            return area
    return None


def classify_stack(frames: list[str]) -> str:
    """The area of one sample; ``frames`` root first, as py-spy writes them."""
    if frames and frames[-1].startswith(WAIT_LEAVES):
        return WAITING
    if frames and frames[-1].startswith(LOOP_LEAF):
        return EVENT_LOOP
    for frame in reversed(frames):
        area = area_of(frame)
        if area is not None:
            return area
    return OTHER


# The main thread running with no Python frame above `asyncio.run`: uvloop's own C
# code (socket reads and writes, the ready queue), or a moment the thread was runnable
# but waiting for a core or the GIL; py-spy cannot tell which without native frames.
LOOP_LEAF = "Runner.run (asyncio/runners.py"
EVENT_LOOP = "event loop (uvloop C code, no Python frame)"
UNATTRIBUTED = "unattributed (thread sampled only at waits)"
_THREAD = re.compile(r"^thread \((?P<tid>\d+)\)")


def summarize(raw: str) -> dict[int, Counter[str]]:
    """Samples per area of each thread (by OS thread id) from py-spy's raw output."""
    threads: dict[int, Counter[str]] = {}
    for line in raw.splitlines():
        match = _LINE.match(line.strip())
        if not match:
            continue
        frames = match["stack"].split(";")
        thread = _THREAD.match(frames[0])
        tid = int(thread["tid"]) if thread else 0
        # The first "frame" names the thread ("thread (TID): name"), not code.
        code = frames[1:] if thread else frames
        threads.setdefault(tid, Counter())[classify_stack(code)] += int(match["count"])
    return threads


def weigh(samples: dict[int, Counter[str]], cpu_s: dict[int, float]) -> Counter[str]:
    """CPU seconds per area: each thread's CPU shared among its non-waiting samples."""
    areas: Counter[str] = Counter()
    for tid, seconds in cpu_s.items():
        counts = Counter(samples.get(tid, Counter()))
        counts.pop(WAITING, None)
        total = sum(counts.values())
        if total == 0:
            areas[UNATTRIBUTED] += seconds
            continue
        for area, n in counts.items():
            areas[area] += seconds * n / total
    return areas


def top_leaves(raw: str, limit: int = 20) -> list[tuple[str, int]]:
    """The most sampled leaf frames, waits left out."""
    leaves: Counter[str] = Counter()
    for line in raw.splitlines():
        match = _LINE.match(line.strip())
        if match:
            leaf = match["stack"].split(";")[-1]
            if not leaf.startswith(WAIT_LEAVES):
                leaves[leaf] += int(match["count"])
    return leaves.most_common(limit)


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds so far of each live thread of ``pid``."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = proc_cpu.parse_stat((task / "stat").read_text())
        except (OSError, ValueError):
            continue
        out[fields.pid] = (fields.utime + fields.stime) / proc_cpu.CLOCK_TICKS
    return out


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(found).exists():
        raise RuntimeError("py-spy is not installed: `make setup` installs the dev group")
    return found


async def profile_target(
    target: Target, method: Method, seconds: float, directory: Path
) -> dict[str, Any]:
    """Records ``target``'s main process for ``seconds`` under c=16 load."""
    pid = next(iter(target.middle.values()))
    output = directory / f"py-spy-{target.name}.txt"
    args = [
        py_spy(),
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(int(seconds)),
        "--rate",
        "200",
        "--format",
        "raw",
        "--threads",
        "--nonblocking",
        "--output",
        str(output),
    ]
    log = directory / f"py-spy-{target.name}.log"
    async with raw_caller(target.url, target.token, method, target, connections=16) as call:
        await load.warm(call, 10)
        with log.open("wb") as errors:
            before = thread_cpu(pid)
            spy = await anyio.open_process(args, stdout=subprocess.DEVNULL, stderr=errors)
            await anyio.sleep(1)  # attached before the load starts
            result = await load.run(call, concurrency=16, max_calls=10**9, max_seconds=seconds - 2)
            with anyio.fail_after(60):
                returncode = await spy.wait()
            after = thread_cpu(pid)
    if returncode != 0 or not output.exists():
        return {"error": f"py-spy failed ({returncode}): {log.read_text(errors='replace')[-500:]}"}
    raw = output.read_text()
    samples = summarize(raw)
    cpu = {tid: after[tid] - before.get(tid, 0.0) for tid in after}
    areas = weigh(samples, cpu)
    total_s = sum(areas.values())
    calls = result.completed
    waiting = sum(c.get(WAITING, 0) for c in samples.values())
    return {
        "target": target.name,
        "samples": sum(sum(c.values()) for c in samples.values()) - waiting,
        "waiting_samples_left_out": waiting,
        "threads": len(samples),
        "cpu_ms_per_call": round(total_s * 1000 / calls, 3) if calls else None,
        "ok_per_s": result.summary()["ok_per_s"],
        "kinds": dict(result.kinds),
        "areas": {
            area: {"share": round(s / total_s, 4), "ms_per_call": round(s * 1000 / calls, 3)}
            for area, s in areas.most_common()
        }
        if total_s and calls
        else {},
        "top_leaves": [{"frame": f, "samples": n} for f, n in top_leaves(raw)],
    }


def main() -> None:
    """The profile alone (without the comparison's rounds): one gateway of this checkout."""
    import argparse
    import json
    import tempfile

    from bench.methods import METHODS
    from bench.targets import lab

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--method", default="tools/call", choices=sorted(METHODS))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, lab(Path(tmp), ("direct", "gateway")) as lab_:
        gateway = next(t for t in lab_.targets if t.name == "gateway")
        report = anyio.run(
            profile_target,
            gateway,
            METHODS[args.method],
            args.seconds,
            Path(tmp),
            backend_options={"use_uvloop": True},
        )
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
