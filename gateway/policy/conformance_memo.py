"""Passed conformance runs, remembered, so a restart does not run the same cases again.

The shipped policy has some 400 conformance cases; on the embedded engine they take
about five seconds, most of it compiling the policy once per distinct data overlay.
A restart with nothing changed would spend that again for a verdict it already has.

A verdict depends on the policy (modules, data and config data: its revision), every
case, the engine and its version, and the gateway's own code that evaluates and
compares decisions. The key hashes all of them, the code as the source of the whole
`gateway` package, so any change at all runs the cases again. Only passes are kept: a
failing run is run, and reported, every time. Only the embedded engine's verdicts are
kept; an OPA sidecar can be upgraded behind the gateway's back.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import gateway
from gateway.policy.conformance import ConformanceCase

log = logging.getLogger(__name__)

# Verdicts kept; older ones are removed when a new one is written.
KEEP = 20


class ConformanceMemo:
    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def key(self, *, revision: str, cases: Sequence[ConformanceCase], engine: str) -> str:
        document = {
            "revision": revision,
            "cases": [asdict(case) for case in cases],
            "engine": engine,
            "engine_version": _engine_version(),
            "gateway_code": _gateway_code_digest(),
        }
        text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
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
            temporary = self._file(key).with_suffix(".tmp")
            temporary.write_text(json.dumps(record) + "\n")
            temporary.replace(self._file(key))
            self._prune()
        except OSError as exc:
            log.warning("could not remember the conformance verdict in %s: %s", self.folder, exc)

    def _file(self, key: str) -> Path:
        return self.folder / f"passed-{key}.json"

    def _prune(self) -> None:
        kept = sorted(self.folder.glob("passed-*.json"), key=lambda p: p.stat().st_mtime)
        for old in kept[:-KEEP]:
            old.unlink(missing_ok=True)


def _engine_version() -> str:
    try:
        return version("regopy")
    except PackageNotFoundError:
        return "unknown"


@functools.cache
def _gateway_code_digest() -> str:
    """The source of every module of the installed `gateway` package (≈ 20 ms, once)."""
    root = Path(gateway.__file__).parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()
