"""The metrics directory of one `gateway serve --processes N`.

The supervisor makes a fresh, empty directory for each serve and puts it in the
environment its server processes are spawned with, before any of them imports
prometheus_client: each then keeps its values in files there, and a scrape of any one
adds up all of them (`gateway.metrics.exposition`). Fresh, so a serve never adds
the files of an earlier one (a pid may be reused); removed when the serve ends. When a
process ends, its live gauges' files are removed (`process_ended`): the number of
decisions waiting is what the living processes say.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# As gateway.metrics.MULTIPROCESS_ENV (not imported: the supervisor keeps no metrics).
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"


@contextmanager
def shared_metrics() -> Iterator[Path]:
    """A new metrics directory in the environment of processes started within."""
    directory = Path(tempfile.mkdtemp(prefix="gateway-metrics-"))
    previous = os.environ.get(MULTIPROCESS_ENV)
    os.environ[MULTIPROCESS_ENV] = str(directory)
    try:
        yield directory
    finally:
        if previous is None:
            os.environ.pop(MULTIPROCESS_ENV, None)
        else:
            os.environ[MULTIPROCESS_ENV] = previous
        shutil.rmtree(directory, ignore_errors=True)


def process_ended(directory: Path, pid: int) -> None:
    """Forgets the live gauges of process ``pid``; its counters and histograms stay in
    the totals."""
    from prometheus_client.multiprocess import mark_process_dead

    mark_process_dead(pid, str(directory))
