"""Where the gateway's CPU goes at c=16: a py-spy profile summed by area.

py-spy (``record --format raw``: one line per distinct stack, ``frame;frame;… count``,
root first) samples the gateway's threads that are running, not idle ones, while the
raw client keeps 16 calls in flight. Each sample is given to the *innermost* frame
that belongs to a known area (`AREAS`, first match wins for a frame), walking from
the leaf towards the root: a standard-library leaf (json, hashlib, sqlite3's caller…)
counts for the code that called it. Frames of the gateway not named by an area are
"other (gateway glue)". The share of samples times the CPU per call measured in the
same run gives milliseconds per call by area.

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

from bench import load
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
    for frame in reversed(frames):
        area = area_of(frame)
        if area is not None:
            return area
    return OTHER


def summarize(raw: str) -> Counter[str]:
    """Samples per area from py-spy's raw (collapsed) output."""
    samples: Counter[str] = Counter()
    for line in raw.splitlines():
        match = _LINE.match(line.strip())
        if not match:
            continue
        frames = match["stack"].split(";")
        # py-spy prefixes the thread ("process …;thread (…)"): not a code frame.
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        samples[classify_stack(frames)] += int(match["count"])
    return samples


def top_leaves(raw: str, limit: int = 25) -> list[tuple[str, int]]:
    leaves: Counter[str] = Counter()
    for line in raw.splitlines():
        match = _LINE.match(line.strip())
        if match:
            leaves[match["stack"].split(";")[-1]] += int(match["count"])
    return leaves.most_common(limit)


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
        "--nonblocking",
        "--output",
        str(output),
    ]
    log = directory / f"py-spy-{target.name}.log"
    async with raw_caller(target.url, target.token, method, target, connections=16) as call:
        await load.warm(call, 10)
        with log.open("wb") as errors:
            spy = await anyio.open_process(args, stdout=subprocess.DEVNULL, stderr=errors)
            await anyio.sleep(1)  # attached before the load starts
            result = await load.run(
                call,
                concurrency=16,
                max_calls=10**9,
                max_seconds=seconds - 2,
                measure={target.name: pid},
            )
            with anyio.fail_after(60):
                returncode = await spy.wait()
    if returncode != 0 or not output.exists():
        return {"error": f"py-spy failed ({returncode}): {log.read_text(errors='replace')[-500:]}"}
    raw = output.read_text()
    areas = summarize(raw)
    waiting = areas.pop(WAITING, 0)
    total = sum(areas.values())
    cpu_ms = result.cpu_ms_per_call(target.name) or 0.0
    return {
        "target": target.name,
        "samples": total,
        "waiting_samples_left_out": waiting,
        "cpu_ms_per_call": round(cpu_ms, 3),
        "ok_per_s": result.summary()["ok_per_s"],
        "areas": {
            area: {"share": round(n / total, 4), "ms_per_call": round(cpu_ms * n / total, 3)}
            for area, n in areas.most_common()
        }
        if total
        else {},
        "top_leaves": [{"frame": f, "share": round(n / total, 4)} for f, n in top_leaves(raw)]
        if total
        else [],
    }
