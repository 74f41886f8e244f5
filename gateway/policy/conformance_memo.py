"""Passed conformance runs, remembered, so a restart does not run the same cases again.

The shipped policy has some 400 conformance cases; on the embedded engine they take
a fraction of a second now (a data overlay is new data for the same Wasm module), but
a team's case set can be far larger, and a restart with nothing changed would spend
that again for a verdict it already has.

A verdict depends on the policy (modules, data and config data: its revision), every
case, the engine, and the code that evaluates and compares decisions. The key hashes
all of them: the source of the whole `gateway` package, the version of every
installed distribution (wasmtime, pydantic, SQLAlchemy, …), Python's version and the
platform. Any change at all runs the cases again. Only passes are kept: a failing run
is run, and reported, every time. Only the embedded engine's verdicts are kept; an
OPA sidecar can be upgraded behind the gateway's back. Where the gateway's source is
not readable as files (a zipped or compiled-only install), nothing is remembered.

Whoever can write the data folder can forge a pass, as they can replace the signing
keys kept beside it: the folder must be the gateway's alone (docs/policies.md).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import platform
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import gateway
from gateway.policy.conformance import ConformanceCase

log = logging.getLogger(__name__)

# Verdicts kept; older ones are removed when a new one is written.
KEEP = 20
_METADATA_FOLDERS = (".dist-info", ".egg-info")


class ConformanceMemo:
    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def key(self, *, revision: str, cases: Sequence[ConformanceCase], engine: str) -> str | None:
        """The key of a verdict, or None when one cannot be formed (nothing is then
        remembered or recalled)."""
        try:
            code = _gateway_code_digest()
            if code is None:
                return None
            document = {
                "revision": revision,
                "cases": [asdict(case) for case in cases],
                "engine": engine,
                "code": code,
                "distributions": _distributions(),
                "python": sys.version,
                "platform": platform.platform(),
            }
            text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        except (OSError, ValueError, TypeError) as exc:
            log.warning("conformance verdicts are not remembered this time: %s", exc)
            return None
        return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()

    def recall(self, key: str) -> int | None:
        """How many cases passed under ``key``, or None if that run is not known."""
        try:
            record = json.loads(self._file(key).read_text())
            return int(record["cases"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def remember(self, key: str, *, revision: str, cases: int) -> None:
        """Records a pass. Best effort: a folder that cannot be written costs the next
        start its cases, nothing else."""
        record = {"revision": revision, "cases": cases, "at": datetime.now(UTC).isoformat()}
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            # A file of its own, then renamed: two gateways starting on one folder
            # never read each other's half-written record.
            handle, temporary = tempfile.mkstemp(dir=self.folder, prefix=".passed-")
            try:
                with os.fdopen(handle, "w") as file:
                    file.write(json.dumps(record) + "\n")
                os.replace(temporary, self._file(key))
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
            self._prune()
        except OSError as exc:
            log.warning("could not remember the conformance verdict in %s: %s", self.folder, exc)

    def _file(self, key: str) -> Path:
        return self.folder / f"passed-{key}.json"

    def _prune(self) -> None:
        kept = sorted(self.folder.glob("passed-*.json"), key=lambda p: p.stat().st_mtime)
        for old in kept[:-KEEP]:
            old.unlink(missing_ok=True)


def _distributions() -> list[str]:
    """Every installed distribution by the name of its metadata folder
    (``<name>-<version>.dist-info``), on every import path: any install, upgrade or
    removal changes the list. Names only: parsing each one's METADATA was most of the
    key's cost (≈ 70 ms of every start for a hundred distributions)."""
    names: set[str] = set()
    for entry in sys.path:
        try:
            with os.scandir(entry or ".") as folder:
                names.update(e.name for e in folder if e.name.endswith(_METADATA_FOLDERS))
        except OSError:  # a zip file, a path that does not exist
            continue
    return sorted(names)


@functools.cache
def _gateway_code_digest() -> str | None:
    """The source of every module of the installed `gateway` package (≈ 20 ms, once);
    None when there is none to read."""
    root = Path(gateway.__file__).parent
    digest = hashlib.sha256()
    files = sorted(root.rglob("*.py"))
    if not files:
        return None
    for path in files:
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()
