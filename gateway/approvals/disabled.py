"""`DisabledApprovals`: the approvals engine of a gateway with ``approvals.enabled:
false``, as a null object. Everything that would hold, request or decide an approval
raises `ApprovalsDisabled`, so callers need no "are approvals on?" branch of their own:
the pipeline refuses a call that needs approval (`gateway.approvals.gate`), a plan's
approval gate fails its step, and the REST API answers 404 with the reason."""

from __future__ import annotations

from typing import Any, NoReturn

from gateway.approvals.errors import ApprovalsDisabled

MESSAGE = "approvals are disabled on this gateway (approvals.enabled: false)"


class DisabledApprovals:
    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def _refuse(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise ApprovalsDisabled(MESSAGE)

    async def usable(self, *args: Any, **kwargs: Any) -> NoReturn:
        self._refuse()

    async def request(self, *args: Any, **kwargs: Any) -> NoReturn:
        self._refuse()

    async def get_fresh(self, *args: Any, **kwargs: Any) -> NoReturn:
        self._refuse()

    async def get(self, *args: Any, **kwargs: Any) -> NoReturn:
        self._refuse()

    async def list(self, *args: Any, **kwargs: Any) -> NoReturn:
        self._refuse()

    async def changes(self, *args: Any, **kwargs: Any) -> NoReturn:
        self._refuse()

    async def current_version(self) -> NoReturn:
        self._refuse()

    async def decide(self, *args: Any, **kwargs: Any) -> NoReturn:
        self._refuse()
