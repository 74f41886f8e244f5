"""Start-up times a newcomer waits for: `gateway --help`, a first `gateway serve --dev`
(empty var/dev: keys, migrations, the policy's conformance cases) until /readyz
answers 200, a restart, and (with --clone) `make run` in a fresh clone.

    python -m bench.start_time [--rounds 3] [--help-runs 10] [--clone] [--repo DIR]

``--repo DIR`` (repeatable) times other checkouts, each with its own .venv (e.g. a
clone of main after `make setup`), in interleaved rounds: a before/after at the same
moments of a shared machine. Each round has three starts per checkout: the first (an
empty var/dev and an empty user cache), a restart, and a fresh var/dev again with the
user cache kept (another checkout of the same code, or `rm -rf var/dev`).

Each dev start runs in a folder of its own laid out like a checkout (this checkout's
.venv and policies linked in), on a free port, with its own cache folder, so a "first
start" is one on a machine that never started a gateway. The phases come from the
gateway's own log lines (their timestamps against the moment of the spawn). CPU is
the gateway's and its children's user+system time, which a busy machine inflates far
less than wall time: the load average is recorded beside every figure. Never a test:
timings are recorded here, in bench/results/start_time-<date>.{md,json}.

Python runs as on a user's machine: PYTHONDONTWRITEBYTECODE is dropped from the
gateway's environment, and each checkout's `gateway` package is byte-compiled first
(as pip does at install), so no checkout's first start pays for compiling sources
another's does not.
"""

from __future__ import annotations

import argparse
import compileall
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from bench.common import machine, write_result

REPO = Path(__file__).resolve().parents[1]
HELP_COMMANDS = [["--help"], ["audit", "--help"], ["runs", "--help"], ["serve", "--help"]]
# Log lines that end a phase (gateway/policy/origins.py, lifecycle.py, cli/serve.py).
PHASES = {
    "policy compiled": re.compile(r"gateway\.policy\.origins: policy \S+ loaded from"),
    "conformance cases": re.compile(r"conformance cases on the embedded engine"),
    "policy in force": re.compile(r"in force \(embedded engine\)"),
    "upstream connected": re.compile(r"upstream demo connected"),
    "listening": re.compile(r"gateway\.serve: listening on"),
}
STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")
READY_TIMEOUT_S = 600.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def load() -> float:
    return os.getloadavg()[0]


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def gateway(repo: Path) -> Path:
    return repo / ".venv" / "bin" / "gateway"


def user_env(**extra: str) -> dict[str, str]:
    """This environment as a user's shell would have it: bytecode is written."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {**env, **extra}


def time_help(repo: Path, runs: int) -> list[dict[str, Any]]:
    rows = []
    for argv in HELP_COMMANDS:
        samples = []
        for _ in range(runs):
            started = time.perf_counter()
            subprocess.run(
                [str(gateway(repo)), *argv], capture_output=True, check=True, env=user_env()
            )
            samples.append(time.perf_counter() - started)
        rows.append(
            {
                "command": "gateway " + " ".join(argv),
                "runs": runs,
                "median_s": round(statistics.median(samples), 3),
                "min_s": round(min(samples), 3),
                "load": round(load(), 2),
            }
        )
    return rows


def lay_out(repo: Path, folder: Path) -> Path:
    folder.mkdir(parents=True)
    for name in (".venv", "policies"):
        (folder / name).symlink_to(repo / name)
    return folder


def start(repo: Path, folder: Path, cache: Path) -> dict[str, Any]:
    """One `gateway serve --dev` in ``folder`` until /readyz is 200; then stopped."""
    port = free_port()
    log_path = folder / f"gateway-{port}.log"
    env = user_env(XDG_CACHE_HOME=str(cache))
    load_before = load()
    cpu_before = children_cpu_s()
    spawned = time.time()
    started = time.perf_counter()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(gateway(repo)), "serve", "--dev", "--port", str(port)],
            cwd=folder,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    try:
        ready = wait_ready(f"http://127.0.0.1:{port}/readyz", process, started, log_path)
    finally:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:  # it exited (its error is the one raised above)
            pass
        process.wait(60)
    return {
        "ready_s": round(ready, 2),
        "phases_s": phases(log_path.read_text(errors="replace"), spawned),
        "cpu_s": round(children_cpu_s() - cpu_before, 2),
        "load_before": round(load_before, 2),
        "load_after": round(load(), 2),
    }


def wait_ready(url: str, process: subprocess.Popen[bytes], started: float, log: Path) -> float:
    deadline = started + READY_TIMEOUT_S
    while time.perf_counter() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gateway exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return time.perf_counter() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"not ready after {READY_TIMEOUT_S} s:\n{log.read_text()}")


def phases(log: str, spawned: float) -> dict[str, float]:
    """Seconds from the spawn to the first log line of each phase's end."""
    found: dict[str, float] = {}
    for line in log.splitlines():
        stamp = STAMP.match(line)
        if stamp is None:
            continue
        at = datetime.strptime(stamp.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
        for name, pattern in PHASES.items():
            if name not in found and pattern.search(line):
                found[name] = round(at - spawned, 2)
    return found


def clone_and_make_run(repo: Path, work: Path) -> dict[str, Any]:
    """`git clone` of the checkout's HEAD, then `make run` until /readyz is 200: uv
    creates the virtualenv (from uv's cache, as on a machine that installed once)."""
    target = work / "clone"
    subprocess.run(["git", "clone", "--quiet", str(repo), str(target)], check=True)
    port = free_port()
    load_before = load()
    started = time.perf_counter()
    log_path = work / "make-run.log"
    env = {k: v for k, v in user_env().items() if not k.startswith("VIRTUAL_ENV")}
    env["XDG_CACHE_HOME"] = str(work / "cache")
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            ["make", "run", f"PORT={port}"],
            cwd=target,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    try:
        ready = wait_ready(f"http://127.0.0.1:{port}/readyz", process, started, log_path)
    finally:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:  # it exited (its error is the one raised above)
            pass
        process.wait(60)
    return {"ready_s": round(ready, 2), "load_before": round(load_before, 2)}


KINDS = ("first", "restart", "new var/dev")


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [
        "# Start-up times",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores; {m['date']}. Load average (1 min) "
        "beside each figure: the machine is shared, so compare CPU seconds and "
        "checkouts within one round.",
        "",
        "| checkout | command | runs | median | min | load |",
        "|---|---|---|---|---|---|",
    ]
    for checkout in result["checkouts"]:
        for row in checkout["help"]:
            lines.append(
                f"| {checkout['commit']} | `{row['command']}` | {row['runs']} | "
                f"{row['median_s']} s | {row['min_s']} s | {row['load']} |"
            )
    names = list(PHASES)
    lines += [
        "",
        "Dev gateway (`gateway serve --dev`) until /readyz is 200, seconds from the spawn; "
        "phases end at the gateway's log lines; CPU of the gateway and its children:",
        "",
        "| round | checkout | start | ready | CPU | "
        + " | ".join(names)
        + " | load before → after |",
        "|---|---|---|---|---|" + "---|" * len(names) + "---|",
    ]
    for index, rnd in enumerate(result["rounds"], 1):
        for commit, starts in rnd.items():
            for kind in KINDS:
                run = starts[kind]
                cells = [str(run["phases_s"].get(n, "-")) for n in names]
                lines.append(
                    f"| {index} | {commit} | {kind} | **{run['ready_s']} s** | "
                    f"{run['cpu_s']} s | "
                    + " | ".join(cells)
                    + f" | {run['load_before']} → {run['load_after']} |"
                )
    if result.get("clone"):
        clone = result["clone"]
        lines += [
            "",
            f"Fresh clone, `make run` to ready (uv installs from its cache): "
            f"**{clone['ready_s']} s** (load {clone['load_before']}).",
        ]
    lines += ["", "Rerun: `python -m bench.start_time` (options: `--help`).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.start_time", description=__doc__)
    parser.add_argument("--rounds", type=int, default=3, help="first start + restart pairs")
    parser.add_argument("--help-runs", type=int, default=10, help="runs of each --help")
    parser.add_argument("--clone", action="store_true", help="also time make run in a clone")
    parser.add_argument(
        "--repo",
        type=Path,
        action="append",
        help="a checkout to time (repeatable; default: this one)",
    )
    parser.add_argument("--name", default="start_time", help="result file name")
    args = parser.parse_args(argv)
    repos = [r.resolve() for r in args.repo or [REPO]]
    for repo in repos:
        if not gateway(repo).exists():
            sys.exit(f"{gateway(repo)} is missing: run `make setup` there first")
        compileall.compile_dir(repo / "gateway", quiet=1)
    work = Path(tempfile.mkdtemp(prefix="start-time-"))
    try:
        checkouts = [{"commit": machine(repo)["commit"], "repo": str(repo)} for repo in repos]
        for checkout, repo in zip(checkouts, repos, strict=True):
            checkout["help"] = time_help(repo, args.help_runs)
        result: dict[str, Any] = {"machine": machine(), "checkouts": checkouts, "rounds": []}
        for index in range(args.rounds):
            rnd: dict[str, Any] = {}
            for number, (checkout, repo) in enumerate(zip(checkouts, repos, strict=True)):
                where = work / f"round-{index}-{number}"
                cache = where / "cache"
                first = start(repo, lay_out(repo, where / "a"), cache)
                restart = start(repo, where / "a", cache)
                fresh = start(repo, lay_out(repo, where / "b"), cache)
                rnd[checkout["commit"]] = {"first": first, "restart": restart, "new var/dev": fresh}
                print(
                    f"round {index + 1} {checkout['commit']}: first {first['ready_s']} s, "
                    f"restart {restart['ready_s']} s, new var/dev {fresh['ready_s']} s",
                    flush=True,
                )
            result["rounds"].append(rnd)
        if args.clone:
            result["clone"] = clone_and_make_run(repos[0], work)
        path = write_result(args.name, result, markdown(result))
        print(path.read_text())
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
