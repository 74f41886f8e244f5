"""One route per path: the routes of the REST surfaces, merged so that each path
answers for every method it serves.

Starlette matches a path to its first route and answers a method that route lacks
with 405 and that route's methods only, so ``GET /v1/runs`` and ``POST /v1/runs``
declared apart made ``OPTIONS /v1/runs`` say ``Allow: GET, HEAD``. Merged, a path
lists all of its methods, and ``OPTIONS`` answers 204 with them (no token needed:
it tells nothing but what the public OpenAPI document already says).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

Endpoint = Callable[[Request], Awaitable[Response]]


def merge_methods(routes: list[BaseRoute]) -> list[BaseRoute]:
    """``routes`` with every path's request-response routes made one, in the order of
    each path's first route. Other routes (ASGI apps such as ``/mcp``) stay as they
    are."""
    by_path: dict[str, dict[str, Endpoint]] = {}
    order: list[BaseRoute | str] = []
    for route in routes:
        if not isinstance(route, Route) or not route.methods or route.app is route.endpoint:
            order.append(route)
            continue
        if route.path not in by_path:
            by_path[route.path] = {}
            order.append(route.path)
        for method in route.methods:
            by_path[route.path].setdefault(method, route.endpoint)
    return [_one_route(item, by_path[item]) if isinstance(item, str) else item for item in order]


def _one_route(path: str, endpoints: dict[str, Endpoint]) -> Route:
    allowed = ", ".join(sorted({*endpoints, "OPTIONS"}))

    async def dispatch(request: Request) -> Response:
        if request.method == "OPTIONS":
            return Response(status_code=204, headers={"Allow": allowed})
        return await endpoints[request.method](request)

    return Route(path, dispatch, methods=[*endpoints, "OPTIONS"])
