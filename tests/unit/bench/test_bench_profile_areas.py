"""How py-spy samples are summed by area (bench/profile_areas.py)."""

from __future__ import annotations

import pytest

from bench.profile_areas import (
    EVENT_LOOP,
    OTHER,
    UNATTRIBUTED,
    WAITING,
    classify_stack,
    summarize,
    weigh,
)

LOOP = "Runner.run (asyncio/runners.py:118)"
CYCLE = "RequestResponseCycle.run_asgi (uvicorn/protocols/http/httptools_impl.py:409)"
PIPELINE = "Pipeline.call (gateway/pipeline.py:120)"
REGO = "rego_set_input_term (regopy/rego_shared.py:221)"


def test_the_innermost_known_frame_names_the_area():
    policy = [
        LOOP,
        CYCLE,
        PIPELINE,
        "EmbeddedEngine.evaluate (gateway/policy/embedded.py:80)",
        "rego_bundle_query_entrypoint (regopy/rego_shared.py:417)",
    ]
    assert classify_stack(policy) == "policy"
    # A standard-library leaf counts for the code that called it.
    audit = [
        LOOP,
        PIPELINE,
        "prepare_record (gateway/audit/batch.py:70)",
        "dumps (json/__init__.py:231)",
    ]
    assert classify_stack(audit) == "audit"
    glue = [LOOP, CYCLE, PIPELINE, "dumps (json/__init__.py:231)"]
    assert classify_stack(glue) == "other (gateway glue)"
    assert classify_stack([LOOP, CYCLE]) == "HTTP/ASGI"
    assert classify_stack(["<module> (gateway/__main__.py:3)", LOOP]) == EVENT_LOOP
    assert classify_stack(["main (somewhere.py:1)"]) == OTHER


def test_mcp_surface_is_mcp_not_http():
    frames = [
        LOOP,
        CYCLE,
        "handle_call (gateway/surfaces/mcp.py:160)",
        "validate (pydantic/main.py:1)",
    ]
    assert classify_stack(frames) == "MCP SDK/pydantic"


def test_waiting_threads_are_counted_apart():
    frames = [
        "_bootstrap (threading.py:1)",
        "AuditLog._drain (gateway/audit/sequencer.py:281)",
        "Condition.wait (threading.py:327)",
    ]
    assert classify_stack(frames) == WAITING


def test_summarize_counts_per_thread():
    raw = "\n".join(
        [
            f"thread (101): MainThread;{LOOP};{CYCLE} 30",
            f"thread (101): MainThread;{LOOP};{PIPELINE};{REGO} 12",
            "thread (202): audit;_bootstrap (threading.py:1);Condition.wait (threading.py:327) 8",
            "garbage line",
            "",
        ]
    )
    assert summarize(raw) == {101: {"HTTP/ASGI": 30, "policy": 12}, 202: {WAITING: 8}}


def test_each_thread_s_cpu_is_shared_among_its_working_samples():
    samples = {
        1: {"HTTP/ASGI": 30, "policy": 10, WAITING: 60},
        2: {"audit": 5, WAITING: 95},
        3: {WAITING: 4},
    }
    areas = weigh(samples, {1: 0.8, 2: 0.3, 3: 0.1, 4: 0.05})
    assert areas["HTTP/ASGI"] == pytest.approx(0.6)
    assert areas["policy"] == pytest.approx(0.2)
    # A thread mostly waiting still gets all its measured CPU, on what it did.
    assert areas["audit"] == pytest.approx(0.3)
    # CPU of threads seen only at waits, or not at all, is kept, not dropped.
    assert areas[UNATTRIBUTED] == pytest.approx(0.15)
    assert WAITING not in areas
