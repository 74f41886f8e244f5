"""Where dev mode keeps its state, and what a running dev gateway leaves there for the
commands beside it: the URL it serves (which is also its tokens' audience).

`gateway serve --dev --port 18400` writes ``var/dev/server.json`` once it listens;
`gateway token` then mints for that audience and the REST clients (`gateway approvals`,
`runs`, `tools drift`, …) talk to that URL, so the commands the banner prints work on
any port without ``--port`` or ``--url``. The record stays after the gateway stops:
it names the last dev gateway started from this folder, which is the one a user
starts again.

Standard library only: every CLI command reads this, and must start fast.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

DEFAULT_DEV_DIR = Path("var/dev")
DEFAULT_DEV_URL = "http://127.0.0.1:8080"
_RECORD = "server.json"


def record_dev_server(data_dir: Path, url: str) -> None:
    """Records the URL of the dev gateway now listening (replaced atomically, so a
    command reading it never sees half a file)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=data_dir, prefix=".server-")
    try:
        with os.fdopen(handle, "w") as file:
            file.write(json.dumps({"url": url}) + "\n")
        os.replace(temporary, data_dir / _RECORD)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def recorded_dev_url(data_dir: Path = DEFAULT_DEV_DIR) -> str | None:
    """The URL of the last dev gateway that listened with this data folder, if any."""
    try:
        url = json.loads((data_dir / _RECORD).read_text())["url"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return url if isinstance(url, str) and url.startswith(("http://", "https://")) else None


def dev_url(data_dir: Path = DEFAULT_DEV_DIR) -> str:
    """The dev gateway's URL: the recorded one, else the default port's."""
    return recorded_dev_url(data_dir) or DEFAULT_DEV_URL
