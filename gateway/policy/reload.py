"""Safe reload of the embedded engine: on SIGHUP, when its source changes, or when its
bundle server has a new revision.

A reload asks the policy's origin (gateway.policy.origins: a Rego folder, a bundle
file, a bundle server) for a candidate other than the policy in force, compiled or
verified; runs the NEW policy's conformance cases against it, appends
`policy.loaded`, and only then swaps it in (`EmbeddedEngine.swap`, one reference
assignment). Calls in flight keep the policy they started with. Anything that fails on
the way (unreadable files, a module that does not compile, a bundle that is unsigned or
does not match its signature, a failing case under ``enforce``, an audit log that
cannot record the load) leaves the previous policy serving; the refusal is logged and
appended as `policy.rejected`.

Reloads run one at a time, and their compiling, fetching and case running happen in a
worker thread, so the event loop keeps serving calls meanwhile.

Watching a folder or a bundle file is polling (no new dependency): every
``watch_interval_s`` the watched files (and the conformance folder's) are fingerprinted
by path, inode, size, mtime and ctime, without reading them: the kernel sets a file's
ctime on every write and no program can set it back, so a changed file always changes
its fingerprint (reading and hashing every file each second cost an idle gateway
more than the rest of its polling). A change is acted on only once the fingerprint
has stayed the same for one interval, so an editor's half-written save is not
loaded; and a fingerprint that was rejected is not retried until the files change
again, so a broken save is reported once, not every second. A bundle server is polled
as OPA polls one, after a random delay between ``polling.min_delay_s`` and
``max_delay_s``, with the last ETag (gateway.policy.origins).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from stat import S_ISREG
from typing import Literal

import anyio
from anyio.abc import TaskGroup

from gateway.audit import AuditLog
from gateway.config import EmbeddedPolicyConfig, OpaPolicyConfig
from gateway.errors import AuditUnavailable, PolicyLoadError
from gateway.policy.conformance import ConformanceReport, cases_path, embedded_evaluator
from gateway.policy.embedded import CompiledPolicy, EmbeddedEngine
from gateway.policy.engine import PolicyEngine
from gateway.policy.lifecycle import (
    Trigger,
    check_conformance,
    loaded_record,
    rejected_record,
)
from gateway.policy.origins import Origin, OriginRejected, origin_for

log = logging.getLogger(__name__)

WATCHED_SUFFIXES = (".rego", ".json")


@dataclass(frozen=True)
class ReloadResult:
    status: Literal["loaded", "unchanged", "rejected"]
    revision: str | None  # the policy attempted (None when its files could not be read)
    previous_revision: str
    error: str | None = None


@dataclass(frozen=True)
class _Candidate:
    revision: str
    compiled: CompiledPolicy | None = None  # None: same revision as the one in force
    report: ConformanceReport | None = None


class _Rejected(Exception):
    def __init__(self, revision: str | None, error: PolicyLoadError) -> None:
        self.revision = revision
        self.error = error


class PolicyReloader:
    """Reloads one `EmbeddedEngine` on request, on SIGHUP and (if configured) on change."""

    def __init__(
        self,
        engine: EmbeddedEngine,
        audit: AuditLog,
        config: EmbeddedPolicyConfig,
        origin: Origin | None = None,
    ) -> None:
        self.engine = engine
        self.origin = origin or origin_for(config)
        self._audit = audit
        self._mode = config.conformance.on_start
        self._cases = cases_path(config.path, config.conformance.path)
        self._watch = config.watch
        self._interval_s = config.watch_interval_s
        self._polling = config.bundle.polling if config.bundle is not None else None
        self._lock = anyio.Lock()
        # One pending request is enough: a reload reads the files as they are when it
        # runs, so requests arriving meanwhile coalesce into it.
        self._requests, self._pending = anyio.create_memory_object_stream[Trigger](1)
        self._restore_signal: Callable[[], None] | None = None

    # --- reloading -----------------------------------------------------------------

    async def reload(self, trigger: Trigger) -> ReloadResult:
        """Loads the folder as it is now if it differs from the policy in force and
        passes its checks; otherwise keeps the policy in force. Never raises for a
        bad policy: the result (and the log and audit log) say what happened."""
        async with self._lock:
            current = self.engine.compiled
            try:
                candidate = await anyio.to_thread.run_sync(self._prepare, current)
            except _Rejected as rejected:
                return await self._reject(trigger, rejected.revision, rejected.error, current)
            if candidate.compiled is None:
                log.log(
                    logging.DEBUG if trigger == "watch" else logging.INFO,
                    "policy reload (%s): unchanged, %s stays",
                    trigger,
                    current.revision,
                )
                return ReloadResult("unchanged", current.revision, current.revision)
            record = loaded_record(
                revision=candidate.revision,
                previous=current.revision,
                engine=self.engine.name,
                modules=list(candidate.compiled.modules),
                report=candidate.report,
                mode=self._mode,
                trigger=trigger,
            )
            try:
                # Recorded before it serves: no decision names a revision whose load
                # is not in the log.
                await self._audit.append(record)
            except AuditUnavailable as exc:
                return await self._reject(trigger, candidate.revision, exc, current, audit=False)
            self.engine.swap(candidate.compiled)
            log.info(
                "policy reload (%s): %s in force, was %s",
                trigger,
                candidate.revision,
                current.revision,
            )
            return ReloadResult("loaded", candidate.revision, current.revision)

    def _prepare(self, current: CompiledPolicy) -> _Candidate:
        """Worker thread: a candidate from the origin, checked; raises `_Rejected`."""
        try:
            prepared = self.origin.prepare(current)
        except OriginRejected as rejected:
            raise _Rejected(rejected.revision, rejected.error) from None
        if prepared.compiled is None:
            return _Candidate(prepared.revision or current.revision)
        revision = prepared.compiled.revision
        try:
            report = check_conformance(
                self._mode,
                self._cases,
                embedded_evaluator(self.engine, prepared.compiled),
                engine=self.engine.name,
            )
        except PolicyLoadError as exc:
            raise _Rejected(revision, exc) from None
        return _Candidate(revision, prepared.compiled, report)

    async def _reject(
        self,
        trigger: Trigger,
        revision: str | None,
        error: PolicyLoadError | AuditUnavailable,
        current: CompiledPolicy,
        *,
        audit: bool = True,
    ) -> ReloadResult:
        log.error(
            "policy reload (%s) rejected %s: %s; still serving %s",
            trigger,
            revision or "(unreadable policy)",
            error.message,
            current.revision,
        )
        if audit and isinstance(error, PolicyLoadError):
            record = rejected_record(
                revision=revision,
                previous=current.revision,
                engine=self.engine.name,
                error=error,
                trigger=trigger,
            )
            try:
                await self._audit.append(record)
            except AuditUnavailable as exc:
                log.error("policy.rejected entry not recorded: %s", exc.message)
        return ReloadResult("rejected", revision, current.revision, error.message)

    # --- triggers ------------------------------------------------------------------

    def request(self, trigger: Trigger) -> None:
        """Asks for a reload from any code on the event loop (the SIGHUP handler)."""
        try:
            self._requests.send_nowait(trigger)
        except anyio.WouldBlock:
            pass  # one is pending already and will read the files as they are then

    async def start(self, tasks: TaskGroup) -> None:
        """Serves reload requests and, with ``watch``, polls the folder, in ``tasks``;
        installs the SIGHUP handler when the process can have one."""
        tasks.start_soon(self._serve_requests)
        if self._watch and self.origin.watched:
            tasks.start_soon(self._watch_loop)
        if self._polling is not None and self.origin.polls:
            tasks.start_soon(self._poll_loop)
        self._install_sighup()

    def stop(self) -> None:
        """Puts the SIGHUP disposition back as it was before `start`."""
        if self._restore_signal is not None:
            self._restore_signal()
            self._restore_signal = None

    def _install_sighup(self) -> None:
        if not hasattr(signal, "SIGHUP"):
            return
        loop = asyncio.get_running_loop()
        previous = signal.getsignal(signal.SIGHUP)
        try:
            loop.add_signal_handler(signal.SIGHUP, self.request, "sighup")
        except (RuntimeError, ValueError, NotImplementedError) as exc:
            # Not the main thread (an in-process test client): reload still works on
            # file changes and through `reload()`.
            log.info("SIGHUP does not reload the policy in this process: %s", exc)
            return

        def restore() -> None:
            loop.remove_signal_handler(signal.SIGHUP)
            if previous is not None:
                signal.signal(signal.SIGHUP, previous)

        self._restore_signal = restore

    async def _serve_requests(self) -> None:
        async with self._pending:
            async for trigger in self._pending:
                await self._reload_logged(trigger)

    async def _reload_logged(self, trigger: Trigger) -> None:
        try:
            await self.reload(trigger)
        except Exception:  # a bug in reloading must not take the serving gateway down
            log.exception("policy reload (%s) failed unexpectedly; policy unchanged", trigger)

    async def _watch_loop(self) -> None:
        # No baseline: the first settled fingerprint is tried once, which costs one
        # read of the folder when nothing changed (same revision: no reload) and
        # catches a save made between the engine's first compile and this loop.
        last_seen: str | None = None
        last_tried: str | None = None
        while True:
            await anyio.sleep(self._interval_s)
            current = await anyio.to_thread.run_sync(self._fingerprint)
            if current is None or current != last_seen:
                last_seen = current  # still changing: act once it holds for a tick
                continue
            if current != last_tried:
                last_tried = current
                await self._reload_logged("watch")

    async def _poll_loop(self) -> None:
        assert self._polling is not None
        while True:
            await anyio.sleep(random.uniform(self._polling.min_delay_s, self._polling.max_delay_s))
            await self._reload_logged("poll")

    def _fingerprint(self) -> str | None:
        folders = list(self.origin.watched)
        if self._cases is not None:
            folders.append(self._cases)
        return fingerprint(folders)


def fingerprint(folders: Sequence[Path]) -> str | None:
    """Hash of the watched files' paths, inodes, sizes, mtimes and ctimes (never their
    contents: see the module's docstring); None while a file vanishes between listing
    and looking at it (a save in progress)."""
    digest = hashlib.sha256()
    for folder in folders:
        digest.update(b"folder\0" + str(folder).encode() + b"\0")
        if folder.is_file():
            files: list[Path] = [folder]
        elif folder.is_dir():
            files = sorted(p for p in folder.rglob("*") if p.suffix in WATCHED_SUFFIXES)
        else:
            continue
        for file in files:
            try:
                stat = file.stat()
            except FileNotFoundError:
                return None
            except OSError as exc:
                # Stable, so the reload it leads to runs once and reports the problem.
                digest.update(f"{file}\0unreadable\0{exc.errno}\0".encode())
                continue
            if not S_ISREG(stat.st_mode):
                continue
            digest.update(
                f"{file}\0{stat.st_ino}\0{stat.st_size}\0{stat.st_mtime_ns}\0"
                f"{stat.st_ctime_ns}\0".encode()
            )
    return digest.hexdigest()


def build_reloader(
    engine: PolicyEngine, audit: AuditLog, config: EmbeddedPolicyConfig | OpaPolicyConfig
) -> PolicyReloader | None:
    """A reloader for an embedded engine; None for engines that reload themselves (OPA
    loads its bundles)."""
    if isinstance(engine, EmbeddedEngine) and isinstance(config, EmbeddedPolicyConfig):
        return PolicyReloader(engine, audit, config)
    return None
