"""How py-spy samples are summed by area (bench/profile_areas.py)."""

from __future__ import annotations

from bench.profile_areas import OTHER, WAITING, classify_stack, summarize

LOOP = "Runner.run (asyncio/runners.py:118)"
CYCLE = "RequestResponseCycle.run_asgi (uvicorn/protocols/http/httptools_impl.py:409)"
PIPELINE = "Pipeline.call (gateway/pipeline.py:120)"


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


def test_summarize_reads_collapsed_lines_and_drops_thread_prefixes():
    raw = "\n".join(
        [
            f"process 1:python;thread (0x7f);{LOOP};{CYCLE} 30",
            f"thread (0x7f);{LOOP};{PIPELINE};rego_set_input_term (regopy/rego_shared.py:221) 12",
            "garbage line",
            "",
        ]
    )
    assert summarize(raw) == {"HTTP/ASGI": 30, "policy": 12}
