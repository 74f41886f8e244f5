"""The audit log: durable appends, verification rate, proofs at a million entries.

1. Appends through `AuditLog` (group commit; SQLite `synchronous=FULL`, PostgreSQL
   `synchronous_commit=on`) with 16 and 64 concurrent producers, each awaiting its own
   acknowledgement (= the commit): appends/s and acknowledgement latency. Measured
   with the sequencer alone and with the `Checkpointer` running beside it (default
   settings: every 1,000 entries or 10 s).
2. Verification: chain verification of stored bytes (`verify_chain_rows`: leaf
   format, seq and prev links, leaf hashes, payload commitments) plus recomputing
   the Merkle root, in entries/s; also end to end including reading from SQLite.
3. Proofs: a 1,000,000-leaf tree store (`TreeStore.extend`), then random inclusion
   and consistency proofs at that size, each checked against the root.

    .venv/bin/python -m bench.audit_log [--rounds 3] [--seconds 3] [--verify-entries 200000]
        [--proof-entries 1000000] [--skip-postgres]

PostgreSQL: GATEWAY_TEST_PG_URL (default the `make test-setup` server); a fresh
database is created for the run and dropped after.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import secrets
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench.common import machine, percentile, summary_ms, write_result
from gateway.audit import (
    AuditLog,
    AuditRecord,
    Checkpointer,
    CompactRange,
    SigningKey,
    TreeStore,
    iter_chain_rows,
    verify_chain_rows,
    verify_consistency,
    verify_inclusion,
)
from gateway.audit.batch import prepare_record, write_batch
from gateway.store import create_engine, migrate
from gateway.tlog.merkle import root as merkle_root

ORIGIN = "bench.example/audit"
PG_ADMIN_URL = os.environ.get(
    "GATEWAY_TEST_PG_URL",
    "postgresql+psycopg://gateway_test:gateway_test@127.0.0.1:5432/gateway_test",
)
TARGETS = {
    "sqlite_64_appends_per_s": 10_000,
    "postgresql_64_appends_per_s": 5_000,
    "verify_entries_per_s": 200_000,
    "inclusion_proof_ms": 5.0,
}


def record(i: int) -> AuditRecord:
    """A call.attempt-sized record (what the pipeline appends most)."""
    return AuditRecord(
        kind="call.attempt",
        ref=f"req_{i:012x}",
        payload={
            "request_id": f"req_{i:012x}",
            "transport": "mcp",
            "principal": {"sub": "agent-7", "iss": "https://idp.example", "roles": ["agent"]},
            "tool": "github__create_issue",
            "arguments": {"owner": "acme", "repo": "infra", "title": f"issue {i}"},
            "arguments_sha256": hashlib.sha256(str(i).encode()).hexdigest(),
        },
        subject="agent-7",
        tool="github__create_issue",
    )


# --- databases -------------------------------------------------------------------------


@contextmanager
def database(backend: str, directory: Path) -> Iterator[sa.Engine]:
    """A fresh, migrated database of ``backend``, removed afterwards."""
    if backend == "sqlite":
        engine = create_engine(f"sqlite:///{directory / f'{secrets.token_hex(4)}.db'}")
        try:
            migrate(engine)
            yield engine
        finally:
            engine.dispose()
        return
    admin = create_engine(PG_ADMIN_URL).execution_options(isolation_level="AUTOCOMMIT")
    name = f"bench_audit_{secrets.token_hex(4)}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = sa.make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    engine = create_engine(url)
    try:
        migrate(engine)
        yield engine
    finally:
        engine.dispose()
        _drop(admin, name)
        admin.dispose()


def _drop(admin: sa.Engine, name: str) -> None:
    # An autovacuum worker (a superuser process) may be busy in the database just
    # written; FORCE cannot end it for a plain role, so wait for it to finish.
    for _ in range(20):
        try:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            return
        except sa.exc.DBAPIError:
            time.sleep(0.5)
    print(f"could not drop database {name}; drop it by hand", flush=True)


# --- 1. appends ----------------------------------------------------------------------


async def appends(
    engine: sa.Engine, producers: int, seconds: float, checkpoints: bool
) -> dict[str, Any]:
    log = AuditLog(engine, ORIGIN)
    await log.start()
    checkpointer = None
    if checkpoints:
        key = SigningKey.generate(ORIGIN)
        checkpointer = Checkpointer(engine, ORIGIN, [key])
        await checkpointer.start()
    latencies: list[float] = []
    counter = iter(range(10**9))
    deadline = 0.0

    async def producer(measure: bool) -> None:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            await log.append(record(next(counter)))
            if measure:
                latencies.append(time.perf_counter() - started)

    deadline = time.perf_counter() + 0.5  # warm up: connections, caches, first batches
    await asyncio.gather(*(producer(False) for _ in range(producers)))
    started, cpu = time.perf_counter(), time.process_time()
    deadline = started + seconds
    await asyncio.gather(*(producer(True) for _ in range(producers)))
    elapsed = time.perf_counter() - started
    cpu_s = time.process_time() - cpu
    await log.close()
    made = 0
    if checkpointer is not None:
        await checkpointer.close()
        with engine.connect() as conn:
            made = conn.exec_driver_sql("SELECT count(*) FROM audit_checkpoints").scalar()
    return {
        "producers": producers,
        "checkpointer": checkpoints,
        "appends": len(latencies),
        "appends_per_s": round(len(latencies) / elapsed),
        "ack": summary_ms(latencies),
        # CPU seconds this process used per wall second: near 1 means bound by one
        # core (the GIL), well below means waiting (fsync, the server, or neighbours).
        "cpu_per_wall_s": round(cpu_s / elapsed, 2),
        "checkpoints": made,
        "_latencies": latencies,
    }


# --- 2. verification -----------------------------------------------------------------


def verification(engine: sa.Engine, entries: int) -> dict[str, Any]:
    prepared = [prepare_record(record(i)) for i in range(entries)]
    for start in range(0, entries, 5000):
        write_batch(engine, ORIGIN, [prepared[start : start + 5000]])
    started = time.perf_counter()
    rows = list(iter_chain_rows(engine))
    read_s = time.perf_counter() - started
    # Best of five: on a shared machine the slowest runs measure the neighbours.
    # CPU time (process_time) is reported too: single-threaded and CPU-bound, it is
    # what a quiet machine would take in wall time.
    chain_s = root_s = cpu_s = float("inf")
    for _ in range(5):
        started, cpu = time.perf_counter(), time.process_time()
        verify_chain_rows(rows, ORIGIN)
        middle = time.perf_counter()
        compact = CompactRange()
        compact.extend(row.leaf_hash for row in rows)
        compact.root()
        if time.perf_counter() - started < chain_s + root_s:
            chain_s, root_s = middle - started, time.perf_counter() - middle
        cpu_s = min(cpu_s, time.process_time() - cpu)
    return {
        "entries": entries,
        "read_s": round(read_s, 3),
        "chain_s": round(chain_s, 3),
        "root_s": round(root_s, 3),
        "cpu_s": round(cpu_s, 3),
        "verify_entries_per_s": round(entries / (chain_s + root_s)),
        "verify_entries_per_cpu_s": round(entries / cpu_s),
        "end_to_end_entries_per_s": round(entries / (read_s + chain_s + root_s)),
    }


# --- 3. proofs -----------------------------------------------------------------------


def proofs(engine: sa.Engine, entries: int, samples: int) -> dict[str, Any]:
    # Only the leaf hashes matter to the tree: rows are written directly, with
    # placeholder leaves, at driver speed.
    hashes = [hashlib.sha256(i.to_bytes(8, "big")).digest() for i in range(entries)]
    started = time.perf_counter()
    mark = "?" if engine.dialect.paramstyle == "qmark" else "%s"
    insert = (
        "INSERT INTO audit_entries (seq, ts, kind, ref, leaf, leaf_hash) "
        f"VALUES ({mark}, '2026-11-21T00:00:00.000Z', 'bench', '', {mark}, {mark})"
    )
    for start in range(0, entries, 50_000):
        with engine.begin() as conn:
            rows = [(i, b"{}", hashes[i]) for i in range(start, min(entries, start + 50_000))]
            conn.exec_driver_sql(insert, rows)
    load_s = time.perf_counter() - started
    store = TreeStore(engine)
    started = time.perf_counter()
    root = store.extend(entries)
    build_s = time.perf_counter() - started
    assert root == merkle_root(hashes)
    rng = random.Random(6962)
    inclusion: list[float] = []
    for _ in range(samples):
        index = rng.randrange(entries)
        started = time.perf_counter()
        proof = store.inclusion_proof(index, entries)
        inclusion.append(time.perf_counter() - started)
        verify_inclusion(hashes[index], index, entries, proof, root)
    consistency: list[float] = []
    for _ in range(samples // 4):
        size1 = rng.randrange(1, entries)
        started = time.perf_counter()
        proof = store.consistency_proof(size1, entries)
        consistency.append(time.perf_counter() - started)
        verify_consistency(size1, entries, proof, store.root(size1), root)
    return {
        "entries": entries,
        "load_s": round(load_s, 1),
        "tree_build_s": round(build_s, 1),
        "inclusion": {**summary_ms(inclusion), "p90_ms": p90_ms(inclusion)},
        "consistency": {**summary_ms(consistency), "p90_ms": p90_ms(consistency)},
    }


def p90_ms(samples: list[float]) -> float:
    return round(percentile(samples, 0.90) * 1000, 3)


# --- report --------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0, help="per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--verify-entries", type=int, default=200_000)
    parser.add_argument("--proof-entries", type=int, default=1_000_000)
    parser.add_argument("--proof-samples", type=int, default=2000)
    parser.add_argument("--skip-postgres", action="store_true")
    args = parser.parse_args()
    backends = ["sqlite"] if args.skip_postgres else ["sqlite", "postgresql"]
    load_before = os.getloadavg()
    result: dict[str, Any] = {"appends": [], "proofs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        # Rounds interleave every configuration, so that a burst of load from the
        # machine's other tenants hits all of them alike; each round uses a fresh
        # database. Reported: the median round's rate, percentiles over all rounds.
        runs: dict[tuple[str, int, bool], list[dict[str, Any]]] = {}
        for _ in range(args.rounds):
            for backend in backends:
                for checkpoints in (False, True):
                    for producers in (16, 64):
                        with database(backend, directory) as engine:
                            row = asyncio.run(appends(engine, producers, args.seconds, checkpoints))
                        runs.setdefault((backend, producers, checkpoints), []).append(row)
                        print(backend, {k: v for k, v in row.items() if k[0] != "_"}, flush=True)
        for (backend, producers, checkpoints), rows in runs.items():
            result["appends"].append(
                {
                    "backend": backend,
                    "producers": producers,
                    "checkpointer": checkpoints,
                    "rounds_appends_per_s": [r["appends_per_s"] for r in rows],
                    "appends_per_s": round(statistics.median(r["appends_per_s"] for r in rows)),
                    "ack": summary_ms([x for r in rows for x in r["_latencies"]]),
                    "cpu_per_wall_s": round(
                        statistics.median(r["cpu_per_wall_s"] for r in rows), 2
                    ),
                    "checkpoints": sum(r["checkpoints"] for r in rows),
                }
            )
        with database("sqlite", directory) as engine:
            result["verification"] = verification(engine, args.verify_entries)
            print(result["verification"], flush=True)
        for backend in backends:
            with database(backend, directory) as engine:
                result["proofs"][backend] = proofs(engine, args.proof_entries, args.proof_samples)
                print(backend, result["proofs"][backend], flush=True)
    report = {
        "benchmark": "audit_log",
        "machine": machine(),
        "load_average_before": [round(x, 1) for x in load_before],
        "load_average_after": [round(x, 1) for x in os.getloadavg()],
        "targets": TARGETS,
        **result,
    }
    path = write_result("audit_log", report, markdown(report, args))
    print(f"wrote {path}")


def markdown(report: dict[str, Any], args: argparse.Namespace) -> str:
    m = report["machine"]
    lines = [
        "# Audit log: durable appends, verification, proofs at 1M entries",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}, commit "
        f"{m['commit']}, {m['date']}. Load average before/after: "
        f"{report['load_average_before']} / {report['load_average_after']} (a shared "
        "machine: other work competes for the two cores).",
        "SQLite in WAL mode with `synchronous=FULL`; PostgreSQL with "
        "`synchronous_commit=on`. Every append is acknowledged only after its commit.",
        f"Command: `.venv/bin/python -m bench.audit_log --rounds {args.rounds} --seconds {args.seconds} "
        f"--verify-entries {args.verify_entries} --proof-entries {args.proof_entries}`",
        "",
        "## Appends through the sequencer",
        "",
        f"{args.rounds} interleaved rounds of {args.seconds} s per configuration, each on a "
        "fresh database; appends/s is the median round (all rounds in brackets), latency "
        "percentiles are over every acknowledged append.",
        "",
        "| backend | producers | checkpointer | appends/s (rounds) | ack p50 | ack p99 | CPU/wall | checkpoints |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in report["appends"]:
        lines.append(
            f"| {row['backend']} | {row['producers']} | {'on' if row['checkpointer'] else 'off'}"
            f" | {row['appends_per_s']} {row['rounds_appends_per_s']} | {row['ack']['p50_ms']} ms"
            f" | {row['ack']['p99_ms']} ms"
            f" | {row['cpu_per_wall_s']} | {row['checkpoints']} |"
        )
    v = report["verification"]
    lines += [
        "",
        "## Verification",
        "",
        f"{v['entries']} entries (call.attempt-sized payloads) from SQLite: reading "
        f"{v['read_s']} s, chain verification {v['chain_s']} s, Merkle root "
        f"{v['root_s']} s (best of 5; {v['cpu_s']} CPU s).",
        "",
        "| measure | entries/s |",
        "| --- | --- |",
        f"| chain verification + Merkle root (entries in memory) | {v['verify_entries_per_s']} |",
        f"| the same, per CPU second (what a quiet machine gives) | {v['verify_entries_per_cpu_s']} |",
        f"| the same, including reading from SQLite | {v['end_to_end_entries_per_s']} |",
        "",
        "## Proofs from the tree store",
        "",
        "| backend | entries | load | tree build | inclusion p50 | p90 | p99 "
        "| consistency p50 | p90 | p99 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for backend, p in report["proofs"].items():
        lines.append(
            f"| {backend} | {p['entries']} | {p['load_s']} s | {p['tree_build_s']} s "
            f"| {p['inclusion']['p50_ms']} ms | {p['inclusion']['p90_ms']} ms "
            f"| {p['inclusion']['p99_ms']} ms | {p['consistency']['p50_ms']} ms "
            f"| {p['consistency']['p90_ms']} ms | {p['consistency']['p99_ms']} ms |"
        )
    lines += [
        "",
        "## Against the targets",
        "",
        "| target | measured | met |",
        "| --- | --- | --- |",
    ]
    by = {(r["backend"], r["producers"], r["checkpointer"]): r for r in report["appends"]}
    checks = []
    for backend, key in (
        ("sqlite", "sqlite_64_appends_per_s"),
        ("postgresql", "postgresql_64_appends_per_s"),
    ):
        if (backend, 64, False) in by:
            got = by[(backend, 64, False)]["appends_per_s"]
            with_cp = by[(backend, 64, True)]["appends_per_s"]
            checks.append(
                (
                    f"{backend}, 64 producers: ≥ {TARGETS[key]} appends/s",
                    f"{got} ({with_cp} with checkpointer)",
                    got >= TARGETS[key],
                )
            )
    checks.append(
        (
            f"verification ≥ {TARGETS['verify_entries_per_s']} entries/s",
            str(v["verify_entries_per_s"]),
            v["verify_entries_per_s"] >= TARGETS["verify_entries_per_s"],
        )
    )
    for backend, p in report["proofs"].items():
        checks.append(
            (
                f"inclusion proof at {p['entries']} entries < {TARGETS['inclusion_proof_ms']} ms ({backend})",
                f"p50 {p['inclusion']['p50_ms']} ms, p99 {p['inclusion']['p99_ms']} ms",
                p["inclusion"]["p99_ms"] < TARGETS["inclusion_proof_ms"],
            )
        )
    for target, measured, met in checks:
        lines.append(f"| {target} | {measured} | {'yes' if met else '**no**'} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
