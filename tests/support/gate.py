"""An HTTP endpoint that answers only when the test lets it: an OPA policy that calls it
with `http.send` holds an evaluation still for as long as a test needs, without
burning CPU and however fast or slow the machine is."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Gate:
    """Answers GET /hold only once `release` is set; `entered` says one is waiting."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        gate = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                gate.entered.set()
                gate.release.wait(600)
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/hold"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
