"""RFC 7240 ``Prefer: wait=N``: how long a REST caller will wait for a held call."""

from __future__ import annotations

import pytest

from gateway.surfaces.rest import prefer_wait


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, None),
        ("", None),
        ("wait=0", 0.0),
        ("wait=10", 10.0),
        ("respond-async, wait=5", 5.0),
        ('Wait="2.5"', 2.5),
        ("wait=5; foo=bar", 5.0),
        ("wait=-3", 0.0),
        ("wait=soon", None),
        ("handling=lenient", None),
    ],
)
def test_prefer_wait(header: str | None, seconds: float | None) -> None:
    assert prefer_wait(header) == seconds
