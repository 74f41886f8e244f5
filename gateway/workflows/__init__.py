"""Versioned workflows: published, content-addressed plans that runs may name.

Between the executor (which runs plans) and the surfaces (which take requests):

- `manifest`: the ``workflow.yaml`` model, its normalized document and content hash,
  and the plan it makes.
- `store`: published versions (immutable), channels and their history, in SQL.
- `diff`: what differs between two versions; `run_diff`: between two runs.
- `scenario`, `simulate`, `testing`: a workflow's scenarios, run offline against it
  (recorded tool results, the gateway's policy; nothing called or written).
- `pinned_tools`: the catalog as pinned (approved definitions, the config's risk and
  labels), for deciding offline on the operator's machine.
- `recorded_run`, `replay`, `capture`: a finished run with each tool result proven
  against the audit log (``result_sha256`` of its ``call.outcome``); replayed against
  a candidate plan and policy (``gateway runs replay``), or written as a scenario
  (``gateway runs capture``). No upstream is called.
- `service`: `Workflows`: publishing (a ``workflow/publish`` decision, audited
  ``workflow.published``), reading, resolving ``NAME@VERSION`` / ``NAME@CHANNEL`` for
  a run (handing the executor a `gateway.executor.workflow_ref.WorkflowRef`), and
  promoting to a channel (a ``workflow/promote`` decision, possibly held for an
  approval, audited ``workflow.promoted``; `promotion`).
- `errors`: the errors of workflows, each with a stable ``code``.

Invariants:

- A published version never changes: the same content is the same id; other content
  under an existing ``NAME@VERSION`` is refused (and the table refuses UPDATEs).
- A version is published only after the decision allowing it is in the audit log; a
  channel moves only after the decision (and any approval) allowing it is.
- A run of a workflow whose pinned tool definitions are not the catalog's does not
  start (`gateway.executor.workflow_ref.check_drift`).
- A replay or a capture uses a recorded result only when it is proven; one that is
  not is reported ("recording not verified"), never used.
"""
