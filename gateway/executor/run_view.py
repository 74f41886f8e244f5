"""What a step's logic sees of the run it belongs to.

`gateway.executor.runner.RunExecution` is the run; the step logic (`steps`, `gates`)
gets it as a `RunView`: the run's identity and plan, each step's state to read, the
expression context, the run's fenced writes of attempts, and its audit events. Not
the states themselves to change: a step's logic returns a `Transition` and the runner
applies it. Defined here, below both, so the runner imports the step logic and the
step logic imports no runner (no cycle, not even of types).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from gateway.executor.deps import ExecutorDeps
from gateway.executor.plan import Plan
from gateway.executor.step_state import StepState
from gateway.executor.store import Claim
from gateway.types import Principal


class RunView(Protocol):
    run_id: str
    claim: Claim
    deps: ExecutorDeps
    plan: Plan
    principal: Principal  # the submitter, through the executor
    provenance: dict[str, Any]

    def state(self, step_id: str) -> StepState:
        """The step's state as the run knows it."""
        ...

    def context(self, including: str | None = None) -> dict[str, Any]:
        """The expression context: inputs, and every finished (or ``including``) step."""
        ...

    async def write(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """A fenced write of the run (`gateway.executor.progress`), in order, carrying
        the results not yet written (`gateway.executor.writer.RunWriter.write`)."""
        ...

    async def started(self, step_id: str) -> None:
        """``step_id`` made its first write (`RunWriter.started`)."""
        ...

    def event(self, kind: str, payload: dict[str, Any], *, defer: bool = False) -> None:
        """Queues an audit event of the run."""
        ...

    async def db(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Database work off the event loop."""
        ...
