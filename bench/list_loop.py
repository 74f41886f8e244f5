"""Lists tools in a loop from a process of its own, for bench.gateway_overhead: a
client listing at full speed without sharing an event loop (or the GIL) with the
client whose calls are being timed.

    python -m bench.list_loop REQUEST.json

REQUEST.json: ``{"url": …, "tokens": [...], "stop": path, "expect": n}``. Lists with
each token in turn (a new subject each time: uncached) until the ``stop`` file exists,
then prints how many lists it made.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx


def main() -> None:
    request = json.loads(Path(sys.argv[1]).read_text())
    stop = Path(request["stop"])
    tokens = request["tokens"]
    count = 0
    with httpx.Client(timeout=30) as client:
        while not stop.exists():
            token = tokens[count % len(tokens)]
            response = client.get(request["url"], headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 200, response.text
            assert len(response.json()["tools"]) == request["expect"]
            count += 1
    print(count)


if __name__ == "__main__":
    main()
