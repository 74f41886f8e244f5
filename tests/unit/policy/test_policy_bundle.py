"""Reading an OPA bundle archive: what it must hold, and the archives it refuses before
anything in them is trusted (paths out of the bundle, links, sizes)."""

from __future__ import annotations

import io
import json
import tarfile

import pytest

from gateway.policy import bundle as bundles
from gateway.policy.bundle import BundleInvalid, read_bundle
from gateway.policy.bundle_signing import file_hash

MANIFEST = {
    "revision": "r1",
    "wasm": [{"entrypoint": "gateway/decision", "module": "/policy.wasm"}],
}


def archive(files: dict[str, bytes | None], *, link: str | None = None) -> bytes:
    """A .tar.gz of ``files`` (None: left out) and, if given, a symbolic link."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, content in files.items():
            if content is None:
                continue
            member = tarfile.TarInfo(name)
            member.size = len(content)
            tar.addfile(member, io.BytesIO(content))
        if link is not None:
            member = tarfile.TarInfo(link)
            member.type = tarfile.SYMTYPE
            member.linkname = "/etc/passwd"
            tar.addfile(member)
    return buffer.getvalue()


def valid(**extra: bytes) -> dict[str, bytes]:
    return {
        "/.manifest": json.dumps(MANIFEST).encode(),
        "/policy.wasm": b"\0asm",
        "/data.json": b'{"a": 1}',
        **extra,
    }


def test_a_bundle_gives_its_module_data_and_revision() -> None:
    files = valid(**{"/team/data.json": b'{"b": 2}', "/team/x.rego": b"package x"})
    bundle = read_bundle(archive(files), origin="test")
    assert bundle.wasm == b"\0asm"
    assert bundle.data == {"a": 1, "team": {"b": 2}}  # mounted at its folder, merged
    assert bundle.revision == "r1"
    assert bundle.signatures is None
    assert set(bundle.files) == {
        ".manifest",
        "policy.wasm",
        "data.json",
        "team/data.json",
        "team/x.rego",
    }


def test_without_a_revision_the_archive_digest_names_it() -> None:
    files = valid(**{"/.manifest": json.dumps({**MANIFEST, "revision": ""}).encode()})
    assert read_bundle(archive(files), origin="test").revision.startswith("sha256:")


@pytest.mark.parametrize(
    ("files", "link", "message"),
    [
        ({"/.manifest": None}, None, "has no .manifest"),
        ({"/.manifest": b"{"}, None, ".manifest is not JSON"),
        ({"/.manifest": json.dumps({"revision": "r"}).encode()}, None, "holds no Wasm module"),
        (
            {
                "/.manifest": json.dumps(
                    {**MANIFEST, "wasm": [{"entrypoint": "x/y", "module": "/policy.wasm"}]}
                ).encode()
            },
            None,
            "no gateway/decision entrypoint",
        ),
        ({"/../escape.rego": b"x"}, None, "unsafe path"),
        ({"/a/../../escape": b"x"}, None, "unsafe path"),
        ({}, "/link", "is not a regular file"),
        ({"/data.json": b"[1]"}, None, "data must be a JSON object"),
    ],
    ids=[
        "no-manifest",
        "bad-manifest",
        "no-wasm",
        "no-entrypoint",
        "dotdot",
        "nested-dotdot",
        "symlink",
        "data",
    ],
)
def test_malformed_bundles_are_refused(
    files: dict[str, bytes | None], link: str | None, message: str
) -> None:
    with pytest.raises(BundleInvalid, match=message):
        read_bundle(archive({**valid(), **files}, link=link), origin="test")


def test_not_an_archive_is_refused() -> None:
    with pytest.raises(BundleInvalid, match=r"not a readable \.tar\.gz"):
        read_bundle(b"not a tarball", origin="test")


def test_size_caps_are_enforced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bundles, "MAX_FILES_BYTES", 1000)
    with pytest.raises(BundleInvalid, match="unpacks to more than"):
        read_bundle(archive(valid(**{"/big.rego": b"x" * 2000})), origin="test")
    monkeypatch.setattr(bundles, "MAX_BUNDLE_BYTES", 10)
    with pytest.raises(BundleInvalid, match="larger than"):
        read_bundle(archive(valid()), origin="test")


def test_structured_files_hash_over_their_value_as_opa_does() -> None:
    # Whitespace and key order do not change a JSON file's hash; a value does. Numbers
    # are hashed as written (Go's json.Number), strings as Go's encoder writes them.
    a = file_hash("data.json", b'{"b": [1, 2.50], "a": "x<y"}', "SHA-256", origin="t")
    b = file_hash("data.json", b'{"a":"x<y","b":[1,2.50]}', "SHA-256", origin="t")
    c = file_hash("data.json", b'{"a":"x<y","b":[1,2.5]}', "SHA-256", origin="t")
    assert a == b != c
    # Any other file is hashed as its bytes.
    assert file_hash("x.rego", b"package x", "SHA-256", origin="t") != file_hash(
        "x.rego", b"package  x", "SHA-256", origin="t"
    )
