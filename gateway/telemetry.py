"""Traces (OpenTelemetry): the one place the gateway touches the SDK.

Off unless the config names a collector (`gateway.config.TracingConfig`). Off, every
function here returns at its first line, and `span` hands back one shared
do-nothing context manager that yields ``None``: no span, context or carrier object
is made on the call path, and the SDK is never imported (a perf budget, not only a
nicety: the call path is measured per microsecond, bench/README.md).

On, the gateway joins its caller's trace and carries it on:

- in: a W3C ``traceparent`` (with its ``tracestate``) from the caller, as HTTP
  headers or, for MCP, in the request's ``params._meta`` (SEP-414, the MCP spec's
  trace-context convention); `incoming` parses it, and a malformed one starts a new
  trace instead (the W3C rule) — nothing a caller sends reaches the audit log except
  a well-formed trace id;
- spans: the HTTP request, authenticate, the call, its policy decision, its audit
  append, an approval wait, the upstream call, and an executor run and its steps;
- out: `propagate` adds the upstream call span's ``traceparent``/``tracestate`` to the
  headers of the forwarded request; MCP upstreams get the same two keys in
  ``params._meta`` too (`gateway.upstreams.mcp_requests.with_trace`);
- the audit log: a call's attempt records `sampled_trace_id`, so a trace and the log
  point at each other (docs/audit.md).

Spans are exported in batches from a thread of their own: an export that is slow or
fails drops spans, it never holds a call.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from gateway.config import TracingConfig
from gateway.version import __version__

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer

log = logging.getLogger(__name__)

# The W3C Trace Context keys, as HTTP header names and as MCP `_meta` keys (SEP-414).
# Baggage is neither read nor passed on: it is the caller's free-form data, and the
# gateway forwards nothing of a caller's unless policy saw it.
TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"

# Whether tracing is on: read as ``telemetry.ON`` (the name is rebound, never import
# it), the cheapest test a hot path can make.
ON = False
_tracer: Tracer | None = None  # None: tracing is off
_provider: TracerProvider | None = None


class _Off:
    """What `span` returns while tracing is off: one shared object, entered and left
    for nothing."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


_OFF = _Off()


def enabled() -> bool:
    return ON


# --- the provider's life -------------------------------------------------------------


@contextlib.contextmanager
def tracing(config: TracingConfig) -> Iterator[None]:
    """Traces on for the duration, as ``config`` says (nothing when it names no
    endpoint); every span still buffered is sent on the way out."""
    if not config.enabled:
        yield
        return
    use(_provider_for(config))
    log.info("tracing on: spans go to %s", config.traces_url)
    try:
        yield
    finally:
        stop()


def use(provider: TracerProvider) -> None:
    """Turns tracing on with ``provider`` (`tracing` builds the OTLP one; tests hand in
    one with the SDK's in-memory exporter)."""
    global ON, _tracer, _provider
    _provider = provider
    _tracer = provider.get_tracer("gateway", __version__)
    ON = True


def flush() -> None:
    """Sends the spans still buffered, waiting at most the export timeout: at shutdown,
    before anything may end the process (uvicorn re-raises the signal that stopped it,
    so code after the server returns may never run)."""
    if _provider is not None:
        _provider.force_flush()


def stop() -> None:
    """Turns tracing off, after sending the spans still buffered."""
    global ON, _tracer, _provider
    provider, _tracer, _provider, ON = _provider, None, None, False
    if provider is not None:
        provider.shutdown()


def _provider_for(config: TracingConfig) -> TracerProvider:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    provider = TracerProvider(
        resource=Resource.create(
            {"service.name": config.service_name, "service.version": __version__}
        ),
        # A caller's sampled flag decides for its trace; the ratio for traces begun here.
        sampler=ParentBased(TraceIdRatioBased(config.sample_ratio)),
    )
    exporter = OTLPSpanExporter(
        endpoint=config.traces_url, headers=dict(config.headers), timeout=config.timeout_s
    )
    provider.add_span_processor(
        BatchSpanProcessor(exporter, export_timeout_millis=int(config.timeout_s * 1000))
    )
    return provider


# --- spans ---------------------------------------------------------------------------


def span(
    name: str, detail: str | None = None, *, parent: Context | None = None, kind: str = "internal"
) -> contextlib.AbstractContextManager[Span | None]:
    """A span named ``name`` (then a space and ``detail``, joined only when tracing is
    on, so the call path builds no string while it is off) around a ``with`` block,
    current inside it: a child of ``parent`` when given, else of the current span.
    Off: the shared no-op, yielding None — callers build attributes only for a span."""
    if _tracer is None:
        return _OFF
    from opentelemetry.trace import SpanKind

    return _tracer.start_as_current_span(
        name if detail is None else f"{name} {detail}",
        context=parent,
        kind=SpanKind[kind.upper()],
    )


def current() -> Context | None:
    """The current trace context (that of the innermost span), to hand to work that
    may run in another task; None while tracing is off."""
    if _tracer is None:
        return None
    from opentelemetry.context import get_current

    return get_current()


def annotate(span: Span, attributes: Mapping[str, Any]) -> None:
    """Sets attributes on ``span``, leaving out values that are None (OpenTelemetry
    has no null)."""
    span.set_attributes({k: v for k, v in attributes.items() if v is not None})


def fail(span: Span | None, description: str) -> None:
    """Marks ``span`` as failed: what the gateway answers as an error (it returns
    outcomes rather than raising, so the SDK cannot tell by itself)."""
    if span is not None:
        from opentelemetry.trace import Status, StatusCode

        span.set_status(Status(StatusCode.ERROR, description))


# --- trace context in and out --------------------------------------------------------


def incoming(carrier: Mapping[str, Any] | None) -> Context | None:
    """The trace context a caller sent in ``carrier`` (HTTP headers, or an MCP
    ``_meta``): None when tracing is off, when there is none, or when it is malformed
    (then the gateway's spans begin a trace of their own)."""
    if _tracer is None or not carrier:
        return None
    traceparent = carrier.get(TRACEPARENT)
    if not isinstance(traceparent, str):
        return None
    from opentelemetry.trace import get_current_span
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    found = {TRACEPARENT: traceparent}
    tracestate = carrier.get(TRACESTATE)
    if isinstance(tracestate, str):
        found[TRACESTATE] = tracestate
    context = TraceContextTextMapPropagator().extract(found)
    return context if get_current_span(context).get_span_context().is_valid else None


def propagate(headers: dict[str, str]) -> dict[str, str]:
    """``headers`` plus the current span's ``traceparent`` (and ``tracestate``), for a
    request to an upstream; ``headers`` itself when tracing is off."""
    if _tracer is None:
        return headers
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return {**headers, **carrier} if carrier else headers


def sampled_span() -> dict[str, str] | None:
    """The current span's ``trace_id`` and ``span_id`` (hex) when it is being recorded,
    to be linked to later (a run executed long after its submission); else None."""
    if _tracer is None:
        return None
    from opentelemetry.trace import format_span_id, format_trace_id, get_current_span

    context = get_current_span().get_span_context()
    if not (context.is_valid and context.trace_flags.sampled):
        return None
    return {
        "trace_id": format_trace_id(context.trace_id),
        "span_id": format_span_id(context.span_id),
    }


def link(span: Span, ids: Any) -> None:
    """Links ``span`` to the span ``ids`` names (`sampled_span`'s shape, as stored);
    nothing for anything else."""
    if not (isinstance(ids, dict) and isinstance(ids.get("trace_id"), str)):
        return
    from opentelemetry.trace import SpanContext, TraceFlags

    try:
        context = SpanContext(
            int(ids["trace_id"], 16),
            int(str(ids.get("span_id")), 16),
            is_remote=True,
            trace_flags=TraceFlags(TraceFlags.SAMPLED),
        )
    except ValueError:
        return
    if context.is_valid:
        span.add_link(context)


def sampled_trace_id() -> str | None:
    """The current trace's id (32 lower-case hex digits) when its spans are being
    recorded, for the audit log; None otherwise (off, or not sampled: no trace to find)."""
    if _tracer is None:
        return None
    from opentelemetry.trace import format_trace_id, get_current_span

    context = get_current_span().get_span_context()
    if not (context.is_valid and context.trace_flags.sampled):
        return None
    return format_trace_id(context.trace_id)
