"""Conformance cases: one set of (input, data, expected decision) every engine must meet.

architecture.md §5 promises the same input/result contract on the embedded engine and on an
OPA server; the cases in ``policies/conformance/*.json`` prove it. The same cases
guard a policy at start and before a reload is accepted (gateway.policy.reload).

A case file ``<name>.json`` holds one key, the file's own name (or ``cases``)::

    {"grants": [{"name": "agent may echo",
                 "input": {policy input v1},
                 "data": {optional overlay over the policy's data},
                 "expected": {"allow": …, "require_approval": …, "reasons": […],
                              "obligations": {…}, "rule": …}}]}

Keyed by the file's name so that OPA, which loads every ``*.json`` under a folder as
data, can merge the case files of ``policies/conformance/`` (as
``data.conformance.<name>``): ``opa test policies`` and ``opa check policies`` work
on the folder as it is. A case of ``"entrypoint": "gateway/visible"`` asks the list
rule (gateway.policy.listing) instead, and expects ``{"visible": [names]}`` (compared
as a set: the order is the catalog's, which the gateway keeps itself).

``data`` is merged over the policy's data: objects key by key, anything else
replaced. ``expected`` is the full decision; it is compared field by field with what
the engine returned, after both went through the gateway's own strict parser, so a
case states what the gateway acts on (engine, revision and decision id are not part
of it).

An engine is a function from a case to a `Decision` (raising `PolicyError` when it
has none); `embedded_evaluator` and `gateway.policy.opa_conformance.OpaCaseRunner`
are the two there are.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.canonical import jcs
from gateway.errors import PolicyError, PolicyLoadError
from gateway.policy.decision import parse_decision
from gateway.policy.embedded import CompiledPolicy, EmbeddedEngine
from gateway.policy.listing import parse_visible
from gateway.types import Decision

# What a case pins: the fields the gateway acts on, in the order mismatches are shown.
DECISION_FIELDS = ("allow", "require_approval", "reasons", "obligations", "rule")
DECISION = "gateway/decision"
VISIBLE = "gateway/visible"
_CASE_KEYS = frozenset({"name", "description", "input", "data", "expected", "entrypoint"})

# A decision for a gateway/decision case, the visible names for a gateway/visible one.
Evaluate = Callable[["ConformanceCase"], "Decision | frozenset[str]"]


class ConformanceCaseError(PolicyLoadError):
    """A case file is unreadable or a case is malformed; the message names both."""

    code = "conformance_cases_invalid"


class ConformanceFailed(PolicyLoadError):
    """A policy does not meet its conformance cases."""

    code = "policy_conformance_failed"

    def __init__(self, report: ConformanceReport) -> None:
        super().__init__(
            f"policy fails {report.failed} of {report.total} conformance cases on the "
            f"{report.engine} engine:\n{report.describe()}",
            details={"mismatches": [m.to_dict() for m in report.mismatches]},
        )
        self.report = report


@dataclass(frozen=True)
class ConformanceCase:
    name: str
    file: str  # where it came from, for messages
    input: dict[str, Any]
    data: dict[str, Any] | None
    expected: dict[str, Any]  # the DECISION_FIELDS, normalized by the gateway's parser
    entrypoint: str = DECISION

    @property
    def label(self) -> str:
        return f"{self.file}: {self.name}"


@dataclass(frozen=True)
class Mismatch:
    case: str
    file: str
    field: str  # one of DECISION_FIELDS, or "error" when the engine gave no decision
    expected: Any
    actual: Any

    def to_dict(self) -> dict[str, Any]:
        return {
            "case": self.case,
            "file": self.file,
            "field": self.field,
            "expected": self.expected,
            "actual": self.actual,
        }


@dataclass(frozen=True)
class ConformanceReport:
    engine: str
    total: int
    mismatches: tuple[Mismatch, ...] = field(default=())
    # The cases did not run: a pass for the same policy, cases, engine and gateway
    # code was remembered (gateway.policy.conformance_memo).
    remembered: bool = False

    @property
    def failed(self) -> int:
        return len({(m.file, m.case) for m in self.mismatches})

    @property
    def passed(self) -> int:
        return self.total - self.failed

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def describe(self, limit: int = 20) -> str:
        lines = []
        for mismatch in self.mismatches[:limit]:
            where = f"  {mismatch.file}: case {mismatch.case!r}"
            if mismatch.field == "error":
                lines.append(f"{where}: no decision ({mismatch.actual})")
            else:
                lines.append(
                    f"{where}: {mismatch.field} expected {_show(mismatch.expected)}, "
                    f"got {_show(mismatch.actual)}"
                )
        if len(self.mismatches) > limit:
            lines.append(f"  … and {len(self.mismatches) - limit} more")
        return "\n".join(lines)

    def check(self) -> None:
        """Raises `ConformanceFailed` unless every case matched."""
        if not self.ok:
            raise ConformanceFailed(self)


def _show(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


# --- loading -------------------------------------------------------------------------


def cases_path(policy_path: Path | None, configured: Path | None) -> Path | None:
    """Where a policy's cases live: the configured path, else ``<policy>/conformance``."""
    if configured is not None:
        return configured
    return None if policy_path is None else Path(policy_path) / "conformance"


def load_cases(path: Path) -> list[ConformanceCase]:
    """Every case in ``path`` (a ``*.json`` file, or a folder of them, sorted by name).

    Raises `ConformanceCaseError` naming the file and case for anything malformed, and
    for a path that does not exist (callers that accept "no cases" check first).
    """
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.json") if p.is_file())
    elif path.is_file():
        files = [path]
    else:
        raise ConformanceCaseError(f"conformance cases {path} do not exist")
    cases: list[ConformanceCase] = []
    seen: set[tuple[str, str]] = set()
    for file in files:
        label = file.relative_to(path).as_posix() if path.is_dir() else file.name
        for case in _load_file(file, label):
            if (case.file, case.name) in seen:
                raise ConformanceCaseError(f"{label}: case name {case.name!r} is used twice")
            seen.add((case.file, case.name))
            cases.append(case)
    return cases


def _load_file(file: Path, label: str) -> list[ConformanceCase]:
    try:
        document = json.loads(file.read_text())
    except OSError as exc:
        raise ConformanceCaseError(f"cannot read conformance file {label}: {exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConformanceCaseError(f"conformance file {label} is not valid JSON: {exc}") from None
    key = file.stem
    if isinstance(document, dict) and set(document) == {"cases"}:
        key = "cases"
    if (
        not isinstance(document, dict)
        or set(document) != {key}
        or not isinstance(document[key], list)
    ):
        raise ConformanceCaseError(
            f'conformance file {label} must be an object with one key, "{file.stem}" '
            '(its own name) or "cases", holding the list of cases'
        )
    return [_parse_case(raw, label, index) for index, raw in enumerate(document[key])]


def _parse_case(raw: Any, label: str, index: int) -> ConformanceCase:
    where = f"{label}: case {index}"
    if not isinstance(raw, dict):
        raise ConformanceCaseError(f"{where} must be an object")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ConformanceCaseError(f'{where} needs a non-empty "name"')
    where = f"{label}: case {index} ({name!r})"
    unknown = sorted(set(raw) - _CASE_KEYS)
    if unknown:
        raise ConformanceCaseError(
            f"{where}: unknown keys {unknown}; a case has {sorted(_CASE_KEYS)}"
        )
    if not isinstance(raw.get("input"), dict):
        raise ConformanceCaseError(f'{where}: "input" must be an object (a policy input)')
    overlay = raw.get("data")
    if overlay is not None and not isinstance(overlay, dict):
        raise ConformanceCaseError(f'{where}: "data" must be an object merged over data')
    entrypoint = raw.get("entrypoint", DECISION)
    if entrypoint not in (DECISION, VISIBLE):
        raise ConformanceCaseError(f'{where}: "entrypoint" must be {DECISION} or {VISIBLE}')
    expected = raw.get("expected")
    if entrypoint == VISIBLE:
        try:
            names = parse_visible(expected)
        except PolicyError as exc:
            raise ConformanceCaseError(f'{where}: "expected" {exc.message}') from None
        return ConformanceCase(
            name=name,
            file=label,
            input=raw["input"],
            data=overlay or None,
            expected={"visible": sorted(names)},
            entrypoint=VISIBLE,
        )
    if not isinstance(expected, dict):
        raise ConformanceCaseError(f'{where}: "expected" must be a decision object')
    missing = [f for f in DECISION_FIELDS if f not in expected]
    if missing:
        raise ConformanceCaseError(
            f'{where}: "expected" must be the full decision; missing {missing}'
        )
    try:
        decision = parse_decision(expected, engine="case", revision=None)
    except PolicyError as exc:
        raise ConformanceCaseError(
            f'{where}: "expected" is not a valid decision: {exc.message}'
        ) from None
    return ConformanceCase(
        name=name,
        file=label,
        input=raw["input"],
        data=overlay or None,
        expected=comparable(decision),
    )


# --- running -------------------------------------------------------------------------


def comparable(result: Decision | frozenset[str]) -> dict[str, Any]:
    """The fields a case pins, in their JSON form."""
    if isinstance(result, frozenset):
        return {"visible": sorted(result)}
    full = result.to_dict()
    return {name: full[name] for name in DECISION_FIELDS}


def run_cases(
    cases: Sequence[ConformanceCase], evaluate: Evaluate, *, engine: str
) -> ConformanceReport:
    """Runs every case; an engine failure on one case is a mismatch, not an abort."""
    mismatches: list[Mismatch] = []
    for case in cases:
        try:
            actual = comparable(evaluate(case))
        except PolicyError as exc:
            mismatches.append(Mismatch(case.name, case.file, "error", None, exc.message))
            continue
        for name in case.expected:
            if actual.get(name) != case.expected[name]:
                mismatches.append(
                    Mismatch(case.name, case.file, name, case.expected[name], actual[name])
                )
    return ConformanceReport(engine=engine, total=len(cases), mismatches=tuple(mismatches))


def embedded_evaluator(engine: EmbeddedEngine, compiled: CompiledPolicy | None = None) -> Evaluate:
    """Cases against ``compiled`` (default: the policy in force), which need not be in
    force yet. A case with ``data`` runs on the same module over the overlaid data;
    each distinct overlay is loaded once."""
    base = compiled or engine.compiled
    overlays: dict[bytes, CompiledPolicy] = {}

    def evaluate(case: ConformanceCase) -> Decision | frozenset[str]:
        target = base
        if case.data:
            key = jcs(case.data)
            if key not in overlays:
                overlays[key] = base.with_overlay(case.data)
            target = overlays[key]
        if case.entrypoint == VISIBLE:
            return parse_visible(target.evaluate(VISIBLE, case.input))
        return engine.evaluate_compiled(target, case.input)

    return evaluate


def check_embedded(
    path: Path, cases: Sequence[ConformanceCase], *, extra_data: dict[str, Any] | None = None
) -> ConformanceReport:
    """Compiles the policy folder ``path`` and runs ``cases`` on it."""
    engine = EmbeddedEngine(path, extra_data=extra_data)
    return run_cases(cases, embedded_evaluator(engine), engine=engine.name)
