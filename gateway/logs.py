"""JSON logs, one object per line, each carrying the request id it belongs to."""

from __future__ import annotations

import contextvars
import json
import logging
import secrets
import sys
from datetime import UTC, datetime

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)


def new_request_id() -> str:
    """A request id (``req_`` and 20 hex digits): every HTTP request, executor step and
    approval decision gets one, and logs and audit entries name it."""
    return "req_" + secrets.token_hex(10)


_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

# Built once: `json.dumps(..., default=str)` builds an encoder per line.
_encode = json.JSONEncoder(default=str).encode


class JsonFormatter(logging.Formatter):
    """One JSON object per line. Every call writes one (`gateway.pipeline`), so this is
    on the call path: it does the least per line it can (docs/decisions/0026)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": _timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = REQUEST_ID.get()
        if request_id:
            entry["request_id"] = request_id
        for key, value in vars(record).items():
            if key not in _STANDARD and key[:1] != "_":
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return _encode(entry)


# The second a line was written in, and the text of that second up to its milliseconds:
# lines come hundreds per second, and most share their second with the previous one.
_second: tuple[int, str] = (-1, "")


def _timestamp(created: float) -> str:
    """``created`` as ISO 8601 UTC with milliseconds (2026-11-21T10:00:00.123+00:00)."""
    global _second
    whole = int(created)
    micros = round((created - whole) * 1e6)  # as datetime rounds a timestamp
    if micros >= 1_000_000:
        whole, micros = whole + 1, micros - 1_000_000
    second, text = _second
    if whole != second:
        text = datetime.fromtimestamp(whole, UTC).isoformat(timespec="seconds")[:-6]
        _second = (whole, text)
    return f"{text}.{micros // 1000:03d}+00:00"


def configure_logging(level: str = "info", *, json_format: bool = True) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if json_format:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    # Not in a JSON line, and each costs a lookup per record (the process id a system
    # call): the gateway's records are of one process, and threads are named in the
    # few records that concern them.
    logging.logProcesses = False
    logging.logThreads = False
    logging.logMultiprocessing = False
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn's access log duplicates what the gateway logs itself, without request ids.
    logging.getLogger("uvicorn.access").disabled = True
    for noisy in ("httpx", "httpx2", "mcp", "mcp.server", "mcp.client"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
