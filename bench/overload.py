"""Overload: what each target answers with 64 and 256 calls in flight (issue 15, item 5).

For each concurrency and target (turns rotated between concurrencies), the raw client
keeps that many `tools/call` requests in flight until a call count or a time limit;
calls still unanswered a grace period later are cancelled and counted as unfinished.
Reported: the share of started calls that succeeded, p99 latency (of every answered
call, and of the successful ones), and every other answer by kind — above all the
calls the gateway reported as a **policy denial** (`denied:*`; under load the rule is
`gateway.fail_closed`: the engine did not decide within `policy.timeout_ms`), apart
from calls it refused as **unavailable** (JSON-RPC -32000, retry later: overloaded
before any decision, which is how the gateway sheds load since main's fd07f39). Load is
no reason to deny a call by policy; the first count says how often it still does.

    .venv/bin/python -m bench.overload [--concurrency 64,256] [--seconds 10] [--calls 4000]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import anyio

from bench import load, proc_cpu
from bench.clients import raw_caller
from bench.common import machine, write_result
from bench.methods import METHODS
from bench.stats import rotated
from bench.targets import Lab, lab

TARGETS = ("direct", "gateway", "gateway_opa", "contextforge")


async def measure(lab_: Lab, args: argparse.Namespace) -> dict[str, Any]:
    method = METHODS["tools/call"]
    pids = [lab_.upstream_pid, *(p for t in lab_.targets for p in t.middle.values())]
    await load.wait_quiet(pids)
    out: dict[str, Any] = {}
    for index, concurrency in enumerate(args.concurrency):
        out[str(concurrency)] = {}
        for target in rotated(lab_.targets, index):
            print(f"c={concurrency} {target.name}", flush=True)
            before = proc_cpu.load_average()
            async with raw_caller(
                target.url, target.token, method, target, connections=concurrency
            ) as call:
                await load.warm(call, 5)
                result = await load.run(
                    call,
                    concurrency=concurrency,
                    max_calls=args.calls,
                    max_seconds=args.seconds,
                    grace_s=args.grace,
                    call_timeout_s=args.call_timeout,
                    measure={**target.middle, "upstream": lab_.upstream_pid},
                )
            out[str(concurrency)][target.name] = {**result.summary(), "load_before": before}
            await load.wait_quiet(pids, timeout_s=30)  # let a backlog drain before the next
    return out


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f} ms"


def markdown(report: dict[str, Any]) -> str:
    m, args = report["machine"], report["args"]
    rows = []
    for concurrency, targets in report["result"].items():
        for name, r in targets.items():
            others = ", ".join(
                f"{k}: {n}" for k, n in sorted(r["kinds"].items()) if k not in ("ok", "unavailable")
            )
            share = "–" if r["success_share"] is None else f"{r['success_share'] * 100:.1f} %"
            rows.append(
                f"| {concurrency} | {name} | {r['started']} | {share} | {_ms(r.get('p99_ms'))} | "
                f"{_ms(r.get('ok_p99_ms'))} | {r['ok_per_s']} | **{r['policy_denials']}** | {r['kinds'].get('unavailable', 0)} | "
                f"{r['unfinished']} | {others or '–'} |"
            )
    return f"""# Overload: 64 and 256 calls in flight

Machine: {m["cpu"]}, {m["cores"]} cores, Python {m["python"]}, commit {m["commit"]}, {m["date"]}.
The machine was shared with other work. Raw JSON-RPC client, `tools/call` of the same
upstream's `echo`; each run: at most {args["calls"]} calls or {args["seconds"]} s, then
{args["grace"]} s for calls in flight (per-call timeout {args["call_timeout"]} s). Both
gateways run their defaults (`policy.timeout_ms` and the decision queue included). A
*policy denial* is a call the gateway refused with a decision (under load the rule
`gateway.fail_closed`: the engine did not decide in time, or failed): load turned into
a policy decision. *Unavailable* is a call refused as overloaded before any decision
(JSON-RPC -32000 with a retry-after), which is not a denial. Command:
`.venv/bin/python -m bench.overload --concurrency {",".join(map(str, args["concurrency"]))} --seconds {args["seconds"]} --calls {args["calls"]}`

| in flight | target | calls started | succeeded | p99 (answered) | p99 (succeeded) | successful calls/s | policy denials | unavailable | unfinished | other answers |
| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
{chr(10).join(rows)}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--concurrency", default="64,256")
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--calls", type=int, default=4000)
    parser.add_argument("--grace", type=float, default=30)
    parser.add_argument("--call-timeout", type=float, default=30)
    args = parser.parse_args()
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    with (
        tempfile.TemporaryDirectory() as tmp,
        lab(Path(tmp), tuple(args.targets.split(","))) as lab_,
    ):
        result = anyio.run(measure, lab_, args, backend_options={"use_uvloop": True})
    report = {
        "benchmark": "overload",
        "machine": machine(),
        "shared_machine": True,
        "args": vars(args),
        "result": result,
    }
    path = write_result("overload", report, markdown(report))
    print(path.read_text())
    print(f"written to {path}")


if __name__ == "__main__":
    main()
