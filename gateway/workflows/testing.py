"""Running a workflow's scenarios (`gateway.workflows.scenario`) against it, offline:
``plan/submit`` and each step's ``tools/call`` decided by policy with the catalog's
tool entries, tool results from the scenario (`gateway.workflows.simulate`). Nothing
is called, written or audited: a test changes nothing.

Two places run them, with one code path: the gateway (``POST /v1/workflows/test``:
its policy and its catalog, `run_scenarios`), and ``gateway workflows test --policy
DIR`` on the operator's machine (a candidate policy and the catalog as pinned,
`gateway.workflows.pinned_tools`; `run_scenarios_with`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from gateway.executor.plan import Plan, problem
from gateway.executor.records import executor_principal
from gateway.executor.validation import ToolLookup, validate_plan
from gateway.executor.workflow_ref import check_drift
from gateway.policy import build_input
from gateway.types import Decision, Principal
from gateway.workflows.errors import WorkflowInvalid
from gateway.workflows.manifest import Manifest
from gateway.workflows.scenario import Scenario, mismatches, parse_scenario
from gateway.workflows.simulate import by_step, simulate

if TYPE_CHECKING:
    from gateway.workflows.service import Workflows

Decide = Callable[[dict[str, Any]], Awaitable[Decision]]


def check_plan(manifest: Manifest, tools: ToolLookup, *, max_steps: int | None) -> Plan:
    """The version's plan, valid against ``tools``, every tool it calls pinned at the
    current definition, every scenario well formed; raises otherwise."""
    for name, scenario in manifest.scenarios.items():
        parse_scenario(name, scenario)
    plan = manifest.to_plan()
    validate_plan(plan, tools, max_steps=max_steps)
    unpinned = sorted(plan.tools() - manifest.tools.keys())
    if unpinned:
        raise WorkflowInvalid(
            [
                problem(None, f"tools.{name}", "the plan calls it: pin its definition hash")
                for name in unpinned
            ]
        )
    check_drift(manifest.to_ref(), tools)
    return plan


async def run_scenarios(
    workflows: Workflows, manifest: Manifest, tester: Principal, *, request_id: str
) -> list[dict[str, Any]]:
    """On the gateway: its policy and catalog."""
    plan = workflows.check_publishable(manifest)
    catalog = workflows.catalog
    resources = {n: catalog.resolve(n).definition.to_policy_resource() for n in plan.tools()}
    return await run_scenarios_with(
        manifest, plan, resources, workflows.decide_input, tester, request_id=request_id
    )


async def run_scenarios_with(
    manifest: Manifest,
    plan: Plan,
    resources: dict[str, dict[str, Any]],
    decide: Decide,
    tester: Principal,
    *,
    request_id: str,
) -> list[dict[str, Any]]:
    """One result per scenario, by name: ``{"scenario", "passed", "mismatches",
    "outcome"}``. ``resources``: what policy sees of each tool the plan calls."""
    scenarios = {name: parse_scenario(name, doc) for name, doc in manifest.scenarios.items()}
    results = []
    for name, scenario in sorted(scenarios.items()):
        subject = _subject(scenario, tester)
        outcome = await _outcome(manifest, plan, scenario, subject, resources, decide, request_id)
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
    manifest: Manifest,
    plan: Plan,
    scenario: Scenario,
    subject: Principal,
    resources: dict[str, dict[str, Any]],
    decide: Decide,
    request_id: str,
) -> dict[str, Any]:
    submit = build_input(
        principal=subject,
        action="plan/submit",
        request_id=request_id,
        transport="rest",
        resource={
            "plan": plan.to_json(),
            "plan_hash": plan.plan_hash,
            "tools": {name: resources[name] for name in sorted(plan.tools())},
            "schedule_id": None,
            "workflow": manifest.to_ref().to_policy(),
        },
        arguments=scenario.inputs,
    )
    decision = await decide(submit)
    if not decision.allow:
        reasons = "; ".join(decision.reasons) or "denied by policy"
        error = {"code": "plan_refused", "message": f"plan refused: {reasons}"}
        return {"status": "refused", "error": error, "steps": {}}
    acting = executor_principal(subject)

    async def decide_step(tool: str, arguments: dict[str, Any], step_id: str) -> Any:
        policy_input = build_input(
            principal=acting,
            action="tools/call",
            request_id=request_id,
            transport="executor",
            resource=resources[tool],
            arguments=arguments,
            run_id="scenario",
            step_id=step_id,
        )
        return await decide(policy_input)

    return await simulate(plan, scenario.inputs, by_step(scenario.results), decide_step)
