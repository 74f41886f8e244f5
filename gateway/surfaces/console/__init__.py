"""The console: static pages and scripts, no build step.

- ``/console``: approvals, changed tool definitions and runs (``console.js``);
- ``/console/audit``: the audit explorer (``audit.js``, docs/audit.md).

Each page is a client of the REST API with the user's own JWT, pasted in and kept
in the tab's ``sessionStorage``: never a cookie (so no CSRF) and never a URL (so
never in logs or history). The approvals page polls every 2 seconds
(docs/approvals.md says why not SSE); the audit page reads on demand.

Served from package data with a strict Content-Security-Policy: scripts and styles
only from the gateway itself, no inline script or style, no framing, requests only
to the gateway. The scripts render every value with ``textContent``, never HTML.
"""

from __future__ import annotations

from importlib import resources

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
# Only these files are served: a name outside the list is a 404, whatever exists.
STATIC_FILES = {
    "index.html": "text/html; charset=utf-8",
    "audit.html": "text/html; charset=utf-8",
    "common.js": "text/javascript; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
    "audit.js": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}


def _load() -> dict[str, bytes]:
    folder = resources.files(__package__) / "static"
    return {name: (folder / name).read_bytes() for name in STATIC_FILES}


class Console:
    def __init__(self) -> None:
        # Read once: the files are part of the installed package and never change.
        self._files = _load()

    def routes(self) -> list[Route]:
        return [
            Route("/console", self.page, methods=["GET"]),
            Route("/console/", self.redirect, methods=["GET"]),
            Route("/console/audit", self.audit_page, methods=["GET"]),
            Route("/console/static/{name}", self.static, methods=["GET"]),
        ]

    async def page(self, request: Request) -> Response:
        return self._file("index.html")

    async def audit_page(self, request: Request) -> Response:
        return self._file("audit.html")

    async def redirect(self, request: Request) -> Response:
        return RedirectResponse("/console", status_code=308)

    async def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC_FILES or name.endswith(".html"):
            return Response("not found", status_code=404, media_type="text/plain")
        return self._file(name)

    def _file(self, name: str) -> Response:
        return Response(
            self._files[name], media_type=STATIC_FILES[name], headers=dict(SECURITY_HEADERS)
        )
