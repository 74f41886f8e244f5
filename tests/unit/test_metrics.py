"""The per-call series are looked up once and count in the gateway's registry."""

from __future__ import annotations

from gateway.metrics import REGISTRY, calls_series, upstream_series


def test_a_calls_series_is_the_labelled_counter_and_counts() -> None:
    labels = {"transport": "test-transport", "status": "ok"}
    before = REGISTRY.get_sample_value("gateway_calls_total", labels) or 0.0
    assert calls_series("test-transport", "ok") is calls_series("test-transport", "ok")
    calls_series("test-transport", "ok").inc()
    assert REGISTRY.get_sample_value("gateway_calls_total", labels) == before + 1


def test_an_upstream_series_observes_into_its_histogram() -> None:
    labels = {"upstream": "test-upstream"}
    before = REGISTRY.get_sample_value("gateway_upstream_call_seconds_count", labels) or 0.0
    upstream_series("test-upstream").observe(0.002)
    assert REGISTRY.get_sample_value("gateway_upstream_call_seconds_count", labels) == before + 1
