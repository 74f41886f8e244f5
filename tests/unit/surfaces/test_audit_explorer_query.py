"""The query parameters of ``GET /v1/audit/entries``: every filter parsed, every mistake
a 400 whose message names the parameter."""

from __future__ import annotations

import pytest
from starlette.datastructures import QueryParams

from gateway.audit.search import SearchQuery
from gateway.errors import BadRequest
from gateway.surfaces.audit_explorer import MAX_LIMIT, search_query


def test_no_parameters_means_the_newest_fifty() -> None:
    assert search_query(QueryParams("")) == SearchQuery(limit=50)


def test_every_filter() -> None:
    query = search_query(
        QueryParams(
            "since=2026-11-21T10:00:00Z&until=2026-11-21T11:00:00%2B01:00&principal=agent:a"
            "&tool=up__echo&kind=call.decision&ref=req_1&limit=200&cursor=41"
        )
    )
    assert query == SearchQuery(
        since="2026-11-21T10:00:00.000Z",
        until="2026-11-21T10:00:00.000Z",
        principal="agent:a",
        tool="up__echo",
        kind="call.decision",
        ref="req_1",
        before=41,
        limit=MAX_LIMIT,
    )


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("principle=agent:a", "unknown query parameter 'principle'"),
        ("kind=call.attempt&kind=call.outcome", "'kind' is given 2 times"),
        ("tool=", "'tool' is empty"),
        ("ref=" + "x" * 501, "'ref' is longer than 500"),
        ("since=today", "since 'today' is not an RFC 3339 time"),
        ("until=2026-02-30T00:00:00Z", "until '2026-02-30T00:00:00Z' is not an RFC 3339"),
        ("since=2026-11-21T11:00:00Z&until=2026-11-21T10:00:00Z", "since .* is after until"),
        ("kind=Call.Attempt", "kind 'Call.Attempt' is not an entry kind"),
        ("kind=call.attempt;drop", "is not an entry kind"),
        ("limit=0", "limit must be from 1 to 200"),
        ("limit=201", "limit must be from 1 to 200"),
        ("limit=ten", "limit must be a non-negative decimal integer"),
        ("limit=-1", "limit must be a non-negative decimal integer"),
        ("cursor=1e3", "cursor must be a non-negative decimal integer"),
        ("cursor=" + "9" * 19, "cursor must be a non-negative decimal integer"),
    ],
)
def test_mistakes_are_bad_requests_naming_the_parameter(query: str, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        search_query(QueryParams(query))
