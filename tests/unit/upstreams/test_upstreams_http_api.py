"""Filling an HTTP tool's path from arguments: encoded, never adding or removing segments."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from gateway.config import HttpTool
from gateway.errors import InvalidArguments
from gateway.upstreams.http_api import _fill_path

ISSUES = HttpTool(name="create_issue", path="/repos/{owner}/{repo}/issues")


def test_placeholders_are_filled_and_the_rest_returned() -> None:
    path, rest = _fill_path(ISSUES, {"owner": "acme", "repo": "web", "title": "Bug", "n": 1})
    assert path == "/repos/acme/web/issues"
    assert rest == {"title": "Bug", "n": 1}


def test_arguments_are_not_mutated() -> None:
    arguments = {"owner": "acme", "repo": "web", "title": "Bug"}
    _fill_path(ISSUES, arguments)
    assert arguments == {"owner": "acme", "repo": "web", "title": "Bug"}


def test_path_without_placeholders_keeps_every_argument() -> None:
    tool = HttpTool(name="search", path="/search")
    assert _fill_path(tool, {"q": "x"}) == ("/search", {"q": "x"})


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        ("a/../b", "a%2F..%2Fb"),
        ("a b", "a%20b"),
        ("x?admin=1", "x%3Fadmin%3D1"),
        ("x#frag", "x%23frag"),
        ("100%", "100%25"),
        ("caf\u00e9", "caf%C3%A9"),
        (42, "42"),
    ],
)
def test_placeholders_are_url_encoded(value: Any, encoded: str) -> None:
    path, _ = _fill_path(ISSUES, {"owner": value, "repo": "web"})
    assert path == f"/repos/{encoded}/web/issues"


@pytest.mark.parametrize("value", ["a/../b", "../../admin", "..", ".", "a/b", "%2e%2e"])
def test_an_argument_cannot_change_the_path_segments(value: str) -> None:
    # What matters is the URL the client really sends: httpx removes "." and ".."
    # segments (RFC 3986 §5.2.4), so those must reach it encoded.
    path, _ = _fill_path(ISSUES, {"owner": value, "repo": value})
    url = httpx.Client(base_url="http://api.test/v1").build_request("GET", path).url
    segments = url.raw_path.decode().split("/")
    assert len(segments) == 6, url
    assert segments[:3] == ["", "v1", "repos"]
    assert segments[5] == "issues"
    assert segments[3] not in (".", "..")
    assert segments[4] not in (".", "..")


def test_missing_placeholder_argument_is_invalid() -> None:
    with pytest.raises(InvalidArguments) as caught:
        _fill_path(ISSUES, {"owner": "acme", "title": "Bug"})
    assert "'repo'" in caught.value.message
    assert "request path" in caught.value.message


def test_placeholder_used_twice_is_filled_twice() -> None:
    tool = HttpTool(name="team", path="/orgs/{org}/teams/{org}-admins")
    assert _fill_path(tool, {"org": "acme", "x": 1}) == ("/orgs/acme/teams/acme-admins", {"x": 1})
