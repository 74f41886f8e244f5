"""A policy's way into service: its conformance check, and the audit entries that
record each load (`policy.loaded`) and each refusal (`policy.rejected`).

Used at start (`start_policy`, both engines) and by every reload of the embedded
engine (gateway.policy.reload). ``conformance.on_start`` decides what a failing case
does: ``enforce`` refuses the policy, ``warn`` logs and accepts it, ``off`` runs no
cases at all.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import anyio

from gateway.audit import AuditLog, AuditRecord
from gateway.config import EmbeddedPolicyConfig, OpaPolicyConfig
from gateway.errors import AuditUnavailable, PolicyLoadError
from gateway.policy.conformance import (
    ConformanceCaseError,
    ConformanceFailed,
    ConformanceReport,
    Evaluate,
    cases_path,
    embedded_evaluator,
    load_cases,
    run_cases,
)
from gateway.policy.conformance_memo import ConformanceMemo
from gateway.policy.embedded import EmbeddedEngine
from gateway.policy.engine import PolicyEngine
from gateway.policy.opa_conformance import OpaCaseRunner

log = logging.getLogger(__name__)

Mode = Literal["enforce", "warn", "off"]
Trigger = Literal["start", "sighup", "watch", "poll"]
READY_WAIT_S = 5.0
Check = Callable[[], ConformanceReport | None]


def check_conformance(
    mode: Mode,
    path: Path | None,
    evaluate: Evaluate,
    *,
    engine: str,
    memo: ConformanceMemo | None = None,
    revision: str | None = None,
) -> ConformanceReport | None:
    """Runs the cases at ``path`` as ``mode`` says; None when no cases ran.

    Raises `ConformanceFailed` (a mismatch) or `ConformanceCaseError` (unreadable
    cases) only under ``enforce``; under ``warn`` both are logged. With a ``memo``
    and the policy's ``revision``, a pass remembered for the same policy, cases,
    engine and gateway code stands in for running the cases again.
    """
    if mode == "off":
        return None
    if path is None:
        log.info("no conformance cases: set policy.path or policy.conformance.path")
        return None
    if not path.exists():
        log.info("no conformance cases for the %s policy (%s does not exist)", engine, path)
        return None
    try:
        cases = load_cases(path)
    except ConformanceCaseError as exc:
        if mode == "enforce":
            raise
        log.warning("conformance cases not run: %s", exc.message)
        return None
    key = memo.key(revision=revision, cases=cases, engine=engine) if memo and revision else None
    if key is not None and memo is not None and memo.recall(key) == len(cases):
        log.info(
            "policy passes its %d conformance cases on the %s engine (remembered: same "
            "policy, cases, engine and gateway as a run in %s)",
            len(cases),
            engine,
            memo.folder,
        )
        return ConformanceReport(engine=engine, total=len(cases), remembered=True)
    report = run_cases(cases, evaluate, engine=engine)
    if key is not None and memo is not None and report.ok and revision is not None:
        memo.remember(key, revision=revision, cases=report.total)
    if not report.ok:
        if mode == "enforce":
            raise ConformanceFailed(report)
        log.warning(
            "policy fails %d of %d conformance cases (on_start: warn, so it serves anyway):\n%s",
            report.failed,
            report.total,
            report.describe(),
        )
    else:
        log.info("policy passes its %d conformance cases on the %s engine", report.total, engine)
    return report


def loaded_record(
    *,
    revision: str | None,
    previous: str | None,
    engine: str,
    modules: list[str] | None,
    report: ConformanceReport | None,
    mode: Mode,
    trigger: Trigger,
) -> AuditRecord:
    payload: dict[str, Any] = {
        "revision": revision,
        "previous_revision": previous,
        "engine": engine,
        "modules": modules,
        "trigger": trigger,
        "conformance": {
            "mode": mode,
            "cases": report.total if report else 0,
            "passed": report.passed if report else 0,
            "remembered": report.remembered if report else False,
        },
    }
    return AuditRecord("policy.loaded", revision or "policy", payload)


def rejected_record(
    *,
    revision: str | None,
    previous: str | None,
    engine: str,
    error: PolicyLoadError,
    trigger: Trigger,
) -> AuditRecord:
    payload: dict[str, Any] = {
        "revision": revision,
        "previous_revision": previous,
        "engine": engine,
        "trigger": trigger,
        "error": {"code": error.code, "message": error.message},
    }
    if isinstance(error, ConformanceFailed):
        payload["error"]["mismatches"] = [m.to_dict() for m in error.report.mismatches[:50]]
    return AuditRecord("policy.rejected", revision or "policy", payload)


async def start_policy(
    config: EmbeddedPolicyConfig | OpaPolicyConfig,
    engine: PolicyEngine,
    audit: AuditLog,
    *,
    memo: ConformanceMemo | None = None,
) -> None:
    """Checks the policy in force against its conformance cases, then appends its
    `policy.loaded` entry. A refusal (under ``enforce``) is appended as
    `policy.rejected` and raised, so the gateway does not start serving. ``memo``
    remembers the embedded engine's passes across restarts."""
    mode: Mode = config.conformance.on_start
    path = cases_path(config.path, config.conformance.path)
    modules: list[str] | None = None
    checking: Check | None
    if isinstance(engine, EmbeddedEngine):
        modules = list(engine.compiled.modules)
        checking = _check_embedded(engine, mode, path, memo)
    elif isinstance(config, OpaPolicyConfig):
        checking = _check_opa(config.url, mode, path)
    else:
        log.warning("no conformance runner for the %s engine; cases not run", engine.name)
        checking = None
    if not isinstance(engine, EmbeddedEngine):
        cases_will_run = checking is not None and mode != "off" and bool(path and path.exists())
        await _wait_ready(engine, READY_WAIT_S if cases_will_run else 1.0)
    try:
        report = await anyio.to_thread.run_sync(checking) if checking else None
    except PolicyLoadError as exc:
        log.error("policy %s refused at start: %s", engine.revision, exc.message)
        record = rejected_record(
            revision=engine.revision, previous=None, engine=engine.name, error=exc, trigger="start"
        )
        try:
            await audit.append(record)
        except AuditUnavailable as unrecorded:  # the refusal is what the operator must see
            log.error("policy.rejected entry not recorded: %s", unrecorded.message)
        raise
    await audit.append(
        loaded_record(
            revision=engine.revision,
            previous=None,
            engine=engine.name,
            modules=modules,
            report=report,
            mode=mode,
            trigger="start",
        )
    )
    log.info("policy %s in force (%s engine)", engine.revision, engine.name)


async def _wait_ready(engine: PolicyEngine, wait_s: float) -> None:
    """Gives a sidecar OPA that starts with the gateway a few seconds to come up: its
    cases need it, and the engine learns its bundle revision on its first probe. An
    OPA still down is no reason to refuse to start (calls deny until it is up), unless
    its conformance cases cannot run."""
    with anyio.move_on_after(wait_s):
        while True:
            with contextlib.suppress(Exception):
                if await engine.ready():
                    return
            await anyio.sleep(0.1)


def _check_embedded(
    engine: EmbeddedEngine, mode: Mode, path: Path | None, memo: ConformanceMemo | None
) -> Check:
    def check() -> ConformanceReport | None:
        return check_conformance(
            mode,
            path,
            embedded_evaluator(engine),
            engine=engine.name,
            memo=memo,
            revision=engine.compiled.content_key,
        )

    return check


def _check_opa(url: str, mode: Mode, path: Path | None) -> Check:
    def check() -> ConformanceReport | None:
        with OpaCaseRunner(url) as runner:
            return check_conformance(mode, path, runner, engine="opa")

    return check
