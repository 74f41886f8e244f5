"""The bench's arithmetic and parsing: ratios, spreads, rotation, /proc stat lines, and
how a reply is counted, the order of a paced run. No timing here: timings live in
bench/ only."""

from __future__ import annotations

import json
import os

import anyio
import pytest

from bench import proc_cpu
from bench.clients import OK, classify, is_policy_denial
from bench.load import RunResult, run
from bench.stats import fmt_spread, per_call_ms, percentile, ratio, rotated, spread


def test_percentile_is_nearest_rank():
    samples = [5.0, 1.0, 3.0, 2.0, 4.0]
    assert percentile(samples, 0.0) == 1.0
    assert percentile(samples, 0.5) == 3.0
    assert percentile(samples, 1.0) == 5.0
    with pytest.raises(ValueError):
        percentile([], 0.5)
    with pytest.raises(ValueError):
        percentile(samples, 1.5)


def test_ratio_without_a_baseline_is_none_not_infinite():
    assert ratio(3.0, 1.5) == 2.0
    assert ratio(None, 1.0) is None
    assert ratio(1.0, None) is None
    assert ratio(1.0, 0.0) is None


def test_spread_ignores_missing_rounds():
    assert spread([2.0, None, 1.0, 4.0]) == {"min": 1.0, "median": 2.0, "max": 4.0, "rounds": 3}
    assert spread([None, None]) is None
    assert fmt_spread({"min": 1.0, "median": 2.0, "max": 4.0}) == "2.00× (1.00–4.00)"
    assert fmt_spread(None) == "–"


def test_rotation_puts_every_target_first_once():
    names = ["a", "b", "c"]
    orders = [rotated(names, i) for i in range(3)]
    assert orders == [["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"]]
    assert {o[0] for o in orders} == set(names)
    assert rotated(names, 4) == ["b", "c", "a"]
    assert rotated([], 2) == []


def test_per_call_ms():
    assert per_call_ms(0.5, 250) == 2.0
    assert per_call_ms(1.0, 0) is None


def test_stat_line_with_spaces_and_parentheses_in_the_name():
    line = "4242 (my (odd) name) S 17 4242 4242 0 -1 4194560 100 0 0 0 250 50 7 3 20 0 4 0"
    fields = proc_cpu.parse_stat(line)
    assert (fields.pid, fields.ppid, fields.utime, fields.stime) == (4242, 17, 250, 50)
    assert (fields.cutime, fields.cstime) == (7, 3)
    with pytest.raises(ValueError):
        proc_cpu.parse_stat("no parentheses here")


def test_tree_ticks_sums_descendants_only():
    def stat(pid: int, ppid: int, ticks: int) -> proc_cpu.StatFields:
        return proc_cpu.StatFields(pid, ppid, ticks, 0, 0, 0)

    stats = [stat(1, 0, 1000), stat(10, 1, 5), stat(11, 10, 7), stat(12, 10, 1), stat(20, 1, 99)]
    assert proc_cpu.tree_ticks(10, stats) == 13
    with pytest.raises(ProcessLookupError):
        proc_cpu.tree_ticks(999, stats)


def test_cpu_seconds_of_this_process_is_readable():
    (seconds,) = proc_cpu.cpu_seconds([os.getpid()]).values()
    assert seconds >= 0
    assert len(proc_cpu.load_average()) == 3


def _reply(result: dict) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": 1, "result": result}).encode()


def test_classify_replies():
    ok = _reply({"content": [], "isError": False})
    assert classify(200, "application/json", ok) == "ok"
    sse = b"event: message\r\ndata: " + ok + b"\r\n\r\n"
    assert classify(200, "text/event-stream", sse) == "ok"
    fail_closed = _reply(
        {
            "isError": True,
            "_meta": {
                "io.agentgateway/decision": {
                    "status": "denied",
                    "error": {"code": "denied"},
                    "decision": {"allow": False, "rule": "gateway.fail_closed"},
                }
            },
        }
    )
    kind = classify(200, "application/json", fail_closed)
    assert kind == "denied:gateway.fail_closed"
    assert is_policy_denial(kind)
    audit = _reply(
        {
            "isError": True,
            "_meta": {
                "io.agentgateway/decision": {
                    "status": "error",
                    "error": {"code": "audit_unavailable"},
                }
            },
        }
    )
    assert classify(200, "application/json", audit) == "error:audit_unavailable"
    assert classify(200, "application/json", _reply({"isError": True})) == "tool_error"
    error = json.dumps({"jsonrpc": "2.0", "id": 1, "error": {"code": -32602, "message": "x"}})
    assert classify(200, "application/json", error.encode()) == "rpc:-32602"
    busy = json.dumps({"jsonrpc": "2.0", "id": 1, "error": {"code": -32000, "message": "busy"}})
    assert classify(200, "application/json", busy.encode()) == "unavailable"
    assert not is_policy_denial("unavailable")
    assert classify(429, "application/json", b"{}") == "http:429"
    assert classify(200, "application/json", b"not json") == "http:unparsed"
    assert not is_policy_denial("error:audit_unavailable")


def test_run_summary_counts_shares_and_denials():
    result = RunResult(concurrency=4, started=5, elapsed_s=2.0)
    for kind, took in [
        ("ok", 0.01),
        ("ok", 0.03),
        ("denied:gateway.fail_closed", 0.2),
        ("timeout", 30),
    ]:
        result.latencies.append(took)
        result.kinds[kind] += 1
        if kind == "ok":
            result.ok_latencies.append(took)
    result.cpu_s = {"gateway": 0.008, "client": 0.004}
    summary = result.summary()
    assert summary["unfinished"] == 1
    assert summary["success_share"] == 0.4
    assert summary["policy_denials"] == 1
    assert summary["ok_per_s"] == 1.0
    assert summary["cpu_ms_per_call"] == {"gateway": 2.0, "client": 1.0}
    assert summary["ok_p99_ms"] == 30.0


def test_a_paced_run_starts_every_call_once_and_in_schedule_order():
    # bench.load.run(rate=...): calls start on a fixed schedule, at most `concurrency`
    # in flight; bounded by max_calls (the time bound is generous: nothing waits on it).
    order: list[int] = []

    async def caller() -> str:
        order.append(len(order))
        return OK

    result = anyio.run(
        lambda: run(caller, concurrency=4, max_calls=12, max_seconds=60, rate=1000.0)
    )
    assert result.started == result.completed == result.ok == 12
    assert order == list(range(12))
