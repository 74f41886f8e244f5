"""The comparison's per-round ratios and the scaling ratios, on made-up figures."""

from __future__ import annotations

import pytest

from bench import comparison_report
from bench.comparison import PHASES, middle_cpu_ms, quick, round_ratios
from bench.methods import METHODS
from bench.scaling import compare
from bench.targets import Target


def phase(p50: float, p99: float, per_s: float, cpu: dict[str, float]) -> dict:
    return {"ok_p50_ms": p50, "ok_p99_ms": p99, "ok_per_s": per_s, "cpu_ms_per_call": cpu}


def turn(p50: float, per_s: float, cpu: dict[str, float]) -> dict:
    return {
        "raw_c1": phase(p50, p50 * 2, 0, {}),
        "raw_c16": phase(0, 0, per_s, cpu),
        "raw_c64": phase(0, 0, per_s / 2, {}),
        "sdk_c1": phase(p50 * 3, 0, 0, {}),
        "sdk_c16": phase(0, 0, per_s / 4, {}),
    }


def test_ratios_divide_by_the_direct_call_of_the_same_round():
    direct = Target("direct", "http://d", "t", lambda n: n)
    sidecar = Target("gateway_opa", "http://g", "t", lambda n: n, {"gateway_opa": 1, "opa": 2})
    rnd = {
        "direct": turn(2.0, 800.0, {"upstream": 1.0}),
        "gateway_opa": turn(8.0, 200.0, {"gateway_opa": 2.5, "opa": 0.5, "upstream": 1.1}),
    }
    ratios = round_ratios(rnd, [direct, sidecar])
    assert ratios["direct"]["p50_c1"] == 1.0
    mine = ratios["gateway_opa"]
    assert mine["p50_c1"] == 4.0
    assert mine["p99_c1"] == 4.0
    assert mine["calls_per_s_c16"] == 0.25
    assert mine["calls_per_s_c64"] == 0.25
    # The middle is the gateway and its sidecar, in upstream calls' worth of CPU.
    assert mine["middle_cpu_c16"] == pytest.approx(3.0)
    assert mine["sdk_p50_c1"] == 4.0
    assert ratios["direct"]["middle_cpu_c16"] is None  # no middle on the direct path


def test_middle_cpu_needs_every_middle_process():
    target = Target("gateway_opa", "u", "t", lambda n: n, {"gateway_opa": 1, "opa": 2})
    assert middle_cpu_ms({"cpu_ms_per_call": {"gateway_opa": 2.0, "opa": 0.5}}, target) == 2.5
    assert middle_cpu_ms({"cpu_ms_per_call": {"gateway_opa": 2.0}}, target) is None


def test_quick_phases_keep_the_shape_with_less_work():
    for full, small in zip(PHASES, quick(PHASES), strict=True):
        assert (small.name, small.client, small.concurrency) == (
            full.name,
            full.client,
            full.concurrency,
        )
        assert small.max_calls < full.max_calls and small.max_seconds < full.max_seconds


def test_methods_use_each_target_s_names():
    gateway = Target("gateway", "u", "t", lambda n: f"up__{n}")
    call = METHODS["tools/call"]
    assert call.params(gateway)["name"] == "up__echo"
    assert call.mcp_name(gateway) == "up__echo"
    assert METHODS["tools/list"].mcp_name(gateway) is None


def test_scaling_ratios_are_taken_within_each_round():
    def figures(p50: float) -> dict:
        return {"ok_p50_ms": p50, "ok_p99_ms": p50 * 2}

    rounds = [
        {
            method: {
                "small": figures(10.0),
                "many_tools": figures(10.0 * k),
                "big_log": figures(11.0),
                "direct_10": figures(1.0),
                "direct_1000": figures(1.0 * k),
            }
            for method in ("tools/call", "tools/list")
        }
        for k in (1.0, 3.0)
    ]
    out = compare(rounds, 1000)
    assert out["tools/list"]["many_tools / small"]["ok_p50_ms"]["min"] == 1.0
    assert out["tools/list"]["many_tools / small"]["ok_p50_ms"]["max"] == 3.0
    assert out["tools/call"]["big_log / small"]["ok_p50_ms"]["median"] == pytest.approx(1.1)
    assert out["tools/call"]["direct_1000 / direct_10"]["ok_p99_ms"]["median"] == 2.0


def test_a_target_sits_out_the_methods_it_does_not_serve():
    peer = Target("contextforge", "http://c", "t", lambda n: n, methods=frozenset({"tools/call"}))
    gateway = Target("gateway", "http://g", "t", lambda n: n)
    assert peer.serves("tools/call") and not peer.serves("resources/read")
    assert gateway.serves("resources/read") and gateway.serves("prompts/get")


def test_the_summary_puts_every_method_side_by_side():
    spread = {"min": 2.0, "median": 2.5, "max": 3.0}
    ratios = {
        k: spread for k in ("p50_c1", "calls_per_s_c16", "middle_cpu_c16", "sdk_p50_c1", "p99_c1")
    }
    result = {
        "ratios": {"direct": ratios, "gateway": ratios},
        "absolute": {
            "direct": {"middle_cpu_ms_c16": None},
            "gateway": {"middle_cpu_ms_c16": spread},
        },
    }
    report = {"methods": {"tools/call": result, "prompts/get": result}}
    summary = comparison_report.methods_summary(report)
    assert "| `tools/call` | **this gateway**" in summary
    assert "| `prompts/get` | **this gateway**" in summary
    assert "direct (the upstream alone)" not in summary
    assert comparison_report.methods_summary({"methods": {"tools/call": result}}) == ""
