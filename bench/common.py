"""Shared pieces of the benchmarks: timing statistics, machine facts, result files.

Results are ratios against a baseline measured in the same run (these machines are
shared and noisy), written to bench/results/ with the machine they ran on.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def summary_ms(samples: list[float]) -> dict[str, float]:
    """Seconds in, milliseconds out."""
    return {
        "n": len(samples),
        "p50_ms": round(percentile(samples, 0.50) * 1000, 3),
        "p99_ms": round(percentile(samples, 0.99) * 1000, 3),
        "mean_ms": round(statistics.fmean(samples) * 1000, 3),
    }


def machine(repo: Path | None = None) -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
            cwd=repo,
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "commit": commit,
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%MZ"),
    }


def write_result(name: str, result: dict[str, Any], markdown: str, *, suffix: str = "") -> Path:
    """Writes results/<name>-<date>[-<suffix>][-<n>].{json,md}; returns the markdown's
    path. A result already there is never overwritten: a second run of the day is -2."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    base = datetime.now(UTC).strftime("%Y%m%d") + (f"-{suffix}" if suffix else "")
    stamp, n = base, 2
    while any((RESULTS / f"{name}-{stamp}.{ext}").exists() for ext in ("json", "md")):
        stamp, n = f"{base}-{n}", n + 1
    (RESULTS / f"{name}-{stamp}.json").write_text(json.dumps(result, indent=2) + "\n")
    path = RESULTS / f"{name}-{stamp}.md"
    path.write_text(markdown)
    return path


def bench_database(kind: str, directory: Path, prefix: str) -> tuple[str, Callable[[], None]]:
    """A database URL for one benchmark and what drops it afterwards: a SQLite file in
    ``directory``, or a new PostgreSQL database (named ``prefix`` + random) on the
    test setup's server."""
    if kind == "sqlite":
        return f"sqlite:///{directory / 'gateway.db'}", lambda: None
    # Imported here: SQLite-only benchmarks need neither the server nor the test setup.
    import secrets

    import sqlalchemy as sa

    from gateway.store import create_engine
    from tests.conftest import PG_ADMIN_URL

    admin = create_engine(PG_ADMIN_URL).execution_options(isolation_level="AUTOCOMMIT")
    name = f"{prefix}{secrets.token_hex(4)}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()

    return sa.make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False), drop
