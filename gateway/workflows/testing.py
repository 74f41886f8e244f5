"""Running a workflow's scenarios (`gateway.workflows.scenario`) against it, offline:
``plan/submit`` and each step's ``tools/call`` decided by the gateway's policy with the
catalog's tool entries, tool results from the scenario (`gateway.workflows.simulate`).
Nothing is called, written or audited: a test changes nothing."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gateway.executor.records import executor_principal
from gateway.policy import build_input
from gateway.types import Principal
from gateway.workflows.manifest import Manifest
from gateway.workflows.scenario import Scenario, mismatches, parse_scenario
from gateway.workflows.simulate import by_step, simulate

if TYPE_CHECKING:
    from gateway.workflows.service import Workflows


async def run_scenarios(
    workflows: Workflows, manifest: Manifest, tester: Principal, *, request_id: str
) -> list[dict[str, Any]]:
    """One result per scenario, by name: ``{"scenario", "passed", "mismatches",
    "outcome"}``."""
    plan = workflows.check_publishable(manifest)
    scenarios = {name: parse_scenario(name, doc) for name, doc in manifest.scenarios.items()}
    results = []
    for name, scenario in sorted(scenarios.items()):
        subject = _subject(scenario, tester)
        outcome = await _outcome(workflows, manifest, plan, scenario, subject, request_id)
        found = mismatches(scenario, outcome)
        results.append(
            {"scenario": name, "passed": not found, "mismatches": found, "outcome": outcome}
        )
    return results


def _subject(scenario: Scenario, tester: Principal) -> Principal:
    if scenario.subject is None:
        return tester
    return Principal(sub=scenario.subject.sub, iss=tester.iss, roles=tuple(scenario.subject.roles))


async def _outcome(
    workflows: Workflows,
    manifest: Manifest,
    plan: Any,
    scenario: Scenario,
    subject: Principal,
    request_id: str,
) -> dict[str, Any]:
    catalog = workflows.catalog
    tools = {name: catalog.resolve(name).definition for name in sorted(plan.tools())}
    submit = build_input(
        principal=subject,
        action="plan/submit",
        request_id=request_id,
        transport="rest",
        resource={
            "plan": plan.to_json(),
            "plan_hash": plan.plan_hash,
            "tools": {name: t.to_policy_resource() for name, t in tools.items()},
            "schedule_id": None,
            "workflow": manifest.to_ref().to_policy(),
        },
        arguments=scenario.inputs,
    )
    decision = await workflows.decide_input(submit)
    if not decision.allow:
        reasons = "; ".join(decision.reasons) or "denied by policy"
        error = {"code": "plan_refused", "message": f"plan refused: {reasons}"}
        return {"status": "refused", "error": error, "steps": {}}
    acting = executor_principal(subject)

    async def decide(tool: str, arguments: dict[str, Any], step_id: str) -> Any:
        policy_input = build_input(
            principal=acting,
            action="tools/call",
            request_id=request_id,
            transport="executor",
            tool=tools[tool],
            arguments=arguments,
            run_id="scenario",
            step_id=step_id,
        )
        return await workflows.decide_input(policy_input)

    return await simulate(plan, scenario.inputs, by_step(scenario.results), decide)
