"""`Workflows`: publishing, reading, resolving for runs, and promoting.

Publishing: parse the manifest → build and validate its plan against the catalog →
every tool the plan calls pinned, at the catalog's current definition → policy
``workflow/publish`` → durable ``workflow.published`` (or ``workflow.refused``) →
the immutable row. The same content again is the same version (nothing new is
recorded); other content under an existing NAME@VERSION is refused.

Runs: ``NAME@VERSION`` or ``NAME@CHANNEL`` resolves to the version's plan and a
`WorkflowRef` that the executor checks for drift, shows policy and records in the
run's provenance.
"""

from __future__ import annotations

import re
from typing import Any

import anyio

from gateway.audit import AuditLog, AuditRecord
from gateway.errors import GatewayError
from gateway.executor.plan import Plan
from gateway.executor.service import Executor
from gateway.executor.workflow_ref import WorkflowRef
from gateway.policy import build_input
from gateway.policy.decider import Decider
from gateway.types import GATEWAY_ENGINE, ClientInfo, Decision, Principal, Transport, deny
from gateway.workflows.diff import diff_manifests
from gateway.workflows.errors import (
    ScenariosFailed,
    WorkflowNotFound,
    WorkflowRefused,
    WorkflowVersionConflict,
)
from gateway.workflows.manifest import CHANNEL_PATTERN, VERSION_PATTERN, Manifest, parse_manifest
from gateway.workflows.promotion import Promotions
from gateway.workflows.store import Published, WorkflowStore
from gateway.workflows.testing import check_plan, run_scenarios


class Workflows:
    def __init__(
        self, *, store: WorkflowStore, executor: Executor, decider: Decider, audit: AuditLog
    ) -> None:
        self.store = store
        self.executor = executor
        self.catalog = executor.deps.catalog
        self._decider = decider
        self._audit = audit
        self.promotions = Promotions(self)

    # --- publishing -------------------------------------------------------------------

    async def publish(
        self,
        principal: Principal,
        document: Any,
        *,
        request_id: str,
        transport: Transport = "rest",
        client: ClientInfo | None = None,
        force: bool = False,
    ) -> tuple[Published, bool]:
        """Publishes a version; ``(version, created)``. Raises `WorkflowInvalid`,
        `PlanInvalid`, `WorkflowDrifted`, `WorkflowVersionConflict`, `WorkflowRefused`,
        or `ScenariosFailed` when a scenario fails and ``force`` is not given (forced,
        the audit entry says so and names the failing scenarios)."""
        try:
            manifest = parse_manifest(document)
            self.check_publishable(manifest)
        except GatewayError as refusal:
            # Refused by the gateway's own checks (a decision by the gateway, as for a
            # call: docs/decisions/0004): audited with what identifies the attempt,
            # never the caller's plan.
            await self._record_refusal(principal, document, refusal)
            raise
        resource = {
            "workflow": {
                "name": manifest.name,
                "version": manifest.version,
                "id": manifest.id,
                "hash": manifest.content_hash,
                "tools": dict(manifest.tools),
            }
        }
        decision = await self.decide(
            principal, "workflow/publish", resource, request_id, transport, client
        )
        if not decision.permits_now:
            await self.record("workflow.refused", manifest.ref, principal, resource, decision)
            raise WorkflowRefused(
                "publishing refused: " + ("; ".join(decision.reasons) or "denied by policy"),
                details={"decision": decision.to_dict()},
            )
        try:
            existing = await self._db(self.store.check_new, manifest)
        except WorkflowVersionConflict as conflict:
            await self._record_refusal(principal, document, conflict)
            raise
        if existing is not None:
            return existing, False
        results = await run_scenarios(self, manifest, principal, request_id=request_id)
        failing = [r["scenario"] for r in results if not r["passed"]]
        if failing and not force:
            error = ScenariosFailed(
                f"{manifest.ref}: scenarios fail: {', '.join(failing)} (see `gateway "
                "workflows test`; publish with force to record it anyway)",
                details={"scenarios": [r for r in results if not r["passed"]]},
            )
            await self._record_refusal(principal, document, error)
            raise error
        # Published only once the decision allowing it is durable.
        await self.record(
            "workflow.published",
            manifest.ref,
            principal,
            resource,
            decision,
            scenarios={"passed": len(results) - len(failing), "failed": failing},
            forced=bool(failing),
        )
        return await self._db(self.store.insert, manifest, principal.sub)

    def check_publishable(self, manifest: Manifest) -> Plan:
        """The version's plan, valid against the catalog, every tool it calls pinned at
        the catalog's current definition; raises otherwise."""
        return check_plan(manifest, self.catalog, max_steps=self.executor.deps.config.max_steps)

    async def _record_refusal(
        self, principal: Principal, document: Any, refusal: GatewayError
    ) -> None:
        named = document if isinstance(document, dict) else {}
        which = {
            key: named.get(key) if isinstance(named.get(key), str) else None
            for key in ("name", "version")
        }
        decision = deny(refusal.message, engine=GATEWAY_ENGINE, revision=self._decider.revision)
        ref = f"{which['name']}@{which['version']}"
        await self.record(
            "workflow.refused",
            ref,
            principal,
            {"workflow": which},
            decision,
            error=refusal.to_dict(),
        )

    # --- reading ------------------------------------------------------------------------

    async def list(self) -> list[dict[str, Any]]:
        versions = await self._db(self.store.list)
        channels = await self._db(self.store.channels)
        out: dict[str, dict[str, Any]] = {}
        for published in versions:
            entry = out.setdefault(
                published.name, {"name": published.name, "versions": [], "channels": {}}
            )
            entry["versions"].append(published.summary())
        for row in channels:
            if row["name"] in out:
                out[row["name"]]["channels"][row["channel"]] = row["version"]
        return list(out.values())

    async def show(self, name: str, version: str | None = None) -> dict[str, Any]:
        """One version (with its whole manifest; ``version`` may be a channel), or the
        workflow's versions, channels and promotion history."""
        if version is not None:
            published, _ = await self.resolve(f"{name}@{version}")
            return {**published.summary(), "manifest": published.manifest.document()}
        versions = await self._db(self.store.list, name)
        if not versions:
            raise WorkflowNotFound(f"no workflow {name}", details={"workflow": name})
        channels = await self._db(self.store.channels, name)
        history = await self._db(self.store.history, name)
        return {
            "name": name,
            "versions": [v.summary() for v in versions],
            "channels": {row["channel"]: row for row in channels},
            "history": history,
        }

    async def diff(self, a: str, b: str) -> dict[str, Any]:
        first, _ = await self.resolve(a)
        second, _ = await self.resolve(b)
        return {
            "a": first.summary(),
            "b": second.summary(),
            "differences": diff_manifests(first.manifest, second.manifest),
        }

    # --- runs ---------------------------------------------------------------------------

    async def resolve(self, ref: str) -> tuple[Published, str | None]:
        """``NAME@VERSION`` or ``NAME@CHANNEL``: the version, and the channel (if one)."""
        name, _, which = ref.partition("@")
        if not name or not which:
            raise WorkflowNotFound(
                f"name a workflow as NAME@VERSION or NAME@CHANNEL, not {ref!r}",
                details={"workflow": ref},
            )
        if re.match(VERSION_PATTERN, which):
            return await self._db(self.store.get, name, which), None
        if not re.match(CHANNEL_PATTERN, which):
            raise WorkflowNotFound(f"no workflow {ref!r}", details={"workflow": ref})
        row = await self._db(self.store.channel, name, which)
        if row is None:
            raise WorkflowNotFound(
                f"workflow {name} has no channel {which!r}", details={"workflow": ref}
            )
        return await self._db(self.store.get, name, row["version"]), which

    async def submit_run(
        self,
        principal: Principal,
        ref: str,
        inputs: Any,
        *,
        idempotency_key: str | None,
        request_id: str,
        transport: Transport,
        client: ClientInfo | None = None,
    ) -> tuple[str, bool]:
        """Submits a run of a published workflow (the executor's ``submit``, told which
        workflow the plan comes from)."""
        published, channel = await self.resolve(ref)
        workflow: WorkflowRef = published.manifest.to_ref(channel=channel)
        return await self.executor.submit(
            principal,
            published.manifest.to_plan(),
            inputs,
            idempotency_key=idempotency_key,
            request_id=request_id,
            transport=transport,
            client=client,
            workflow=workflow,
        )

    # --- shared ------------------------------------------------------------------------

    async def decide_input(self, policy_input: dict[str, Any]) -> Decision:
        return await self._decider.decide(policy_input)

    async def test(
        self, principal: Principal, document: Any, *, request_id: str
    ) -> list[dict[str, Any]]:
        """Runs the manifest's scenarios against it, offline (`gateway.workflows.testing`)."""
        return await run_scenarios(self, parse_manifest(document), principal, request_id=request_id)

    async def decide(
        self,
        principal: Principal,
        action: Any,
        resource: dict[str, Any],
        request_id: str,
        transport: Transport,
        client: ClientInfo | None,
    ) -> Decision:
        policy_input = build_input(
            principal=principal,
            action=action,
            request_id=request_id,
            transport=transport,
            resource=resource,
            client=client,
        )
        return await self._decider.decide(policy_input)

    async def record(
        self,
        kind: str,
        ref: str,
        principal: Principal,
        resource: dict[str, Any],
        decision: Decision,
        **extra: Any,
    ) -> None:
        """A durable audit entry (workflows hold no caller secrets: no redaction)."""
        payload = {
            "principal": principal.to_audit(),
            **resource,
            "decision": decision.to_dict(),
            **extra,
        }
        await self._audit.append(AuditRecord(kind, ref, payload, principal.sub))

    async def _db(self, function: Any, *args: Any) -> Any:
        return await anyio.to_thread.run_sync(lambda: function(*args))
