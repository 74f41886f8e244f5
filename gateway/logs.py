"""JSON logs, one object per line, each carrying the request id it belongs to.

Records are formatted where they are logged (the request id is a context variable
there) and written by a background thread: a write to a slow pipe or file must not
stall the event loop, every call logs a line, and the write cost as much as the
audit commit's fsync on the measured hot path (bench/README.md). What is queued is
written at exit; a process killed with SIGKILL may lose its last lines, never an
audit entry (the audit log does not go through logging).
"""

from __future__ import annotations

import atexit
import contextvars
import json
import logging
import logging.handlers
import queue
import sys
from datetime import UTC, datetime

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = REQUEST_ID.get()
        if request_id:
            entry["request_id"] = request_id
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


_listener: logging.handlers.QueueListener | None = None


def configure_logging(level: str = "info", *, json_format: bool = True) -> None:
    global _listener
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    # QueueHandler.prepare formats the record here, in the logging thread.
    handler = logging.handlers.QueueHandler(records)
    if json_format:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    writer = logging.StreamHandler(sys.stderr)
    writer.setFormatter(logging.Formatter("%(message)s"))
    if _listener is not None:
        _listener.stop()
    _listener = logging.handlers.QueueListener(records, writer)
    _listener.start()
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn's access log duplicates what the gateway logs itself, without request ids.
    logging.getLogger("uvicorn.access").disabled = True
    for noisy in ("httpx", "httpx2", "mcp", "mcp.server", "mcp.client"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


@atexit.register
def _flush_queued_records() -> None:
    if _listener is not None:
        _listener.stop()  # writes what is queued, then ends the thread
