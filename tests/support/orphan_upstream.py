"""A stdio MCP upstream that says who adopted it when the process that started it died.

    python -m tests.support.orphan_upstream REPORT_DIR CALL_LOG [--stubborn]

It serves `tests.support.upstream_mcp` over stdio. When its stdin ends (the gateway
process that started it is gone), it waits until the kernel has given it a new parent,
writes that parent's pid to REPORT_DIR/<its pid>, and exits: a test then knows which
process had to reap it (docs/decisions/0035, the supervisor as child subreaper).

With ``--stubborn`` it does not exit there: it keeps running, and a SIGTERM only
makes it write REPORT_DIR/<its pid>.sigterm, so that only SIGKILL ends it (an
upstream that ignores both its input's end and a polite request to stop). It gives up
by itself after `LINGER_S`, a bound for a test that failed.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from tests.support import upstream_mcp

ADOPTION_WAIT_S = 60.0  # bound: the kernel reparents at the parent's exit
LINGER_S = 120.0


def main() -> None:
    report_dir, call_log = Path(sys.argv[1]), Path(sys.argv[2])
    stubborn = "--stubborn" in sys.argv[3:]
    parent = os.getppid()
    upstream_mcp.CALL_LOG = call_log
    try:
        upstream_mcp.server.run("stdio")
    except Exception:  # its stdout is a pipe to a dead process: broken
        pass
    # End of input: the parent closed it or died. The parent's exit closes its files
    # before the kernel hands its children on, so the new parent may not be there yet.
    deadline = time.monotonic() + ADOPTION_WAIT_S
    while os.getppid() == parent and time.monotonic() < deadline:
        time.sleep(0.01)  # polling kernel state, bounded (no event for "reparented")
    if os.getppid() != parent:
        (report_dir / str(os.getpid())).write_text(str(os.getppid()))
    if stubborn:
        linger(report_dir / f"{os.getpid()}.sigterm")


def linger(sigterm_report: Path) -> None:
    def refuse(_signum: int, _frame: FrameType | None) -> None:
        sigterm_report.write_text("ignored")

    signal.signal(signal.SIGTERM, refuse)
    time.sleep(LINGER_S)  # not a wait for anything: the process outstaying its welcome


if __name__ == "__main__":
    main()
