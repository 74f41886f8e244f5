"""`sole_error`: an error raised through task groups reads as itself when it is the
only one (a refused policy at start must not print as an ExceptionGroup)."""

from __future__ import annotations

import asyncio

import anyio
import pytest

from gateway.errors import PolicyLoadError, sole_error


async def _raise_through_two_task_groups(*errors: Exception) -> None:
    async def fail(error: Exception) -> None:
        raise error

    async with anyio.create_task_group() as outer:
        outer.start_soon(anyio.sleep_forever)  # cancelled when the inner group fails
        async with anyio.create_task_group() as inner:
            inner.start_soon(anyio.sleep_forever)
            for error in errors:
                inner.start_soon(fail, error)


def _caught(*errors: Exception) -> BaseExceptionGroup:
    with pytest.raises(BaseExceptionGroup) as caught:
        anyio.run(_raise_through_two_task_groups, *errors)
    return caught.value


def test_the_one_error_through_nested_groups_and_cancellations_is_itself() -> None:
    refused = PolicyLoadError("policy fails its conformance cases")
    assert sole_error(_caught(refused)) is refused


def test_several_errors_stay_a_group() -> None:
    group = _caught(ValueError("a"), KeyError("b"))
    assert sole_error(group) is group


def test_a_group_of_cancellations_only_stays_a_group() -> None:
    group = BaseExceptionGroup("cancelled", [asyncio.CancelledError()])
    assert sole_error(group) is group
