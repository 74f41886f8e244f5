"""A stdio MCP upstream that says who adopted it when the process that started it died.

    python -m tests.support.orphan_upstream REPORT_DIR CALL_LOG

It serves `tests.support.upstream_mcp` over stdio. When its stdin ends (the gateway
process that started it is gone), it waits until the kernel has given it a new parent,
writes that parent's pid to REPORT_DIR/<its pid>, and exits: a test then knows which
process had to reap it (docs/decisions/0035, the supervisor as child subreaper).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from tests.support import upstream_mcp

ADOPTION_WAIT_S = 60.0  # bound: the kernel reparents at the parent's exit


def main() -> None:
    report_dir, call_log = Path(sys.argv[1]), Path(sys.argv[2])
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


if __name__ == "__main__":
    main()
