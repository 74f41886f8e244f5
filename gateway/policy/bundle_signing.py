"""Checking an OPA bundle's signature (``.signatures.json``) as OPA does.

``opa build -b … --signing-key KEY --signing-alg ALG`` (or ``opa sign``) puts one JWT
in ``.signatures.json``: ``{"signatures": ["<JWT>"]}``. Its claims list every file of
the bundle, ``{"files": [{"name", "hash", "algorithm"}], "keyid"?, "scope"?}``. A bundle
is accepted only when

- there is exactly one JWT, signed by a configured key: the key id is
  ``policy.bundle.signing.keyid``, else the JWT header's ``kid``, else the ``keyid``
  claim (OPA's order), and the JWT's ``alg`` must be the algorithm configured for
  that key (never one the bundle chooses);
- the ``scope`` claim equals the configured scope (both may be absent);
- every file of the bundle is listed with a matching hash, and every listed file is in
  the bundle.

Hashes follow OPA (v1/bundle/hash.go): a binary file is hashed as it is; a structured
document (``data.json``, ``data.yaml``, ``.manifest``) is hashed over its value with
object keys sorted, ``{`` ``"k":v`` ``,`` ``}`` and ``[`` ``]`` written compactly,
scalars as Go's JSON encoder writes them (numbers as written in the file), so
whitespace and key order do not change it.

Every refusal raises `BundleSignatureInvalid` naming what failed; the caller keeps the
previous policy serving.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from gateway.config import BundleSigningConfig
from gateway.errors import PolicyLoadError
from gateway.policy.bundle import MANIFEST, Bundle

STRUCTURED = ("data.json", "data.yaml", MANIFEST)
_HASHES: dict[str, Callable[[], Any]] = {
    "SHA-256": hashlib.sha256,
    "SHA-384": hashlib.sha384,
    "SHA-512": hashlib.sha512,
}


class BundleSignatureInvalid(PolicyLoadError):
    """A bundle that is unsigned, signed by an unknown key, or does not match its signature."""

    code = "policy_bundle_signature_invalid"


def verify_bundle(bundle: Bundle, config: BundleSigningConfig, *, origin: str) -> None:
    """Returns when ``bundle`` is signed as ``config`` requires; raises otherwise."""
    claims = _verified_claims(bundle, config, origin)
    listed: dict[str, dict[str, Any]] = {}
    for entry in claims.get("files") or []:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise BundleSignatureInvalid(f"bundle {origin}: malformed files claim in its signature")
        listed[entry["name"].lstrip("/")] = entry
    for name, content in bundle.files.items():
        entry = listed.pop(name, None)
        if entry is None:
            raise BundleSignatureInvalid(f"bundle {origin}: {name} is not covered by its signature")
        expected = str(entry.get("hash", ""))
        actual = file_hash(name, content, str(entry.get("algorithm", "")), origin=origin)
        if actual != expected.lower():
            raise BundleSignatureInvalid(
                f"bundle {origin}: {name} does not match its signature (digest mismatch)"
            )
    if listed:
        raise BundleSignatureInvalid(
            f"bundle {origin}: its signature lists files the bundle does not hold: "
            f"{', '.join(sorted(listed))}"
        )


def _verified_claims(bundle: Bundle, config: BundleSigningConfig, origin: str) -> dict[str, Any]:
    if bundle.signatures is None:
        raise BundleSignatureInvalid(
            f"bundle {origin} is not signed (no .signatures.json); sign it with "
            "`opa build -b … --signing-key` (docs/policies.md, 'Bundles')"
        )
    try:
        tokens = json.loads(bundle.signatures)["signatures"]
    except (ValueError, KeyError, TypeError):
        raise BundleSignatureInvalid(f"bundle {origin}: .signatures.json is malformed") from None
    if not isinstance(tokens, list) or len(tokens) != 1 or not isinstance(tokens[0], str):
        raise BundleSignatureInvalid(f"bundle {origin}: .signatures.json must hold exactly one JWT")
    token = tokens[0]
    try:
        header = jwt.get_unverified_header(token)
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise BundleSignatureInvalid(
            f"bundle {origin}: its signature is not a JWT: {exc}"
        ) from None
    key_id = config.keyid or header.get("kid") or unverified.get("keyid")
    if not isinstance(key_id, str) or not key_id:
        raise BundleSignatureInvalid(f"bundle {origin}: its signature names no key id")
    key = config.keys.get(key_id)
    if key is None:
        raise BundleSignatureInvalid(
            f"bundle {origin} is signed with key {key_id!r}, which is not one of "
            f"policy.bundle.signing.keys ({', '.join(sorted(config.keys))})"
        )
    if header.get("alg") != key.algorithm:
        raise BundleSignatureInvalid(
            f"bundle {origin}: signed with {header.get('alg')!r}, but key {key_id!r} is "
            f"configured for {key.algorithm}"
        )
    try:
        public_key = load_pem_public_key(Path(key.key_file).read_bytes())
    except (OSError, ValueError) as exc:
        raise PolicyLoadError(
            f"policy.bundle.signing.keys.{key_id}.key_file cannot be read as a PEM public "
            f"key: {exc}"
        ) from None
    try:
        claims = jwt.decode(
            token,
            public_key,  # type: ignore[arg-type]
            algorithms=[key.algorithm],
            options={"verify_aud": False, "verify_iss": False},
        )
    except jwt.PyJWTError as exc:
        raise BundleSignatureInvalid(
            f"bundle {origin}: its signature does not verify with key {key_id!r}: {exc}"
        ) from None
    scope = config.scope or key.scope
    if (claims.get("scope") or None) != (scope or None):
        raise BundleSignatureInvalid(f"bundle {origin}: signature scope mismatch")
    return claims


def file_hash(name: str, content: bytes, algorithm: str, *, origin: str) -> str:
    """The hex digest OPA's signature lists for this file."""
    factory = _HASHES.get(algorithm)
    if factory is None:
        raise BundleSignatureInvalid(
            f"bundle {origin}: {name} is hashed with {algorithm or '(none)'}; the gateway "
            f"accepts {', '.join(_HASHES)}"
        )
    digest = factory()
    if posixpath.basename(name) in STRUCTURED:
        try:
            value = _load_structured(name, content)
        except ValueError as exc:
            raise BundleSignatureInvalid(f"bundle {origin}: {name} is unreadable: {exc}") from None
        _walk(value, digest.update)
    else:
        digest.update(content)
    return str(digest.hexdigest())


class _Number(str):
    """A JSON number kept as written: Go hashes json.Number by its literal text."""


def _load_structured(name: str, content: bytes) -> Any:
    """Raises ValueError (YAML's errors too) when the content is unreadable."""
    if name.endswith(".yaml"):
        import yaml  # lazily: serving reads no YAML (start time, docs/performance.md)

        try:
            return yaml.safe_load(content)
        except yaml.YAMLError as exc:
            raise ValueError(str(exc)) from None
    return json.loads(content, parse_int=_Number, parse_float=_Number)


def _walk(value: Any, write: Callable[[bytes], Any]) -> None:
    if isinstance(value, dict):
        write(b"{")
        for index, key in enumerate(sorted(value, key=lambda k: k.encode("utf-8"))):
            if index:
                write(b",")
            write(_go_string(key))
            write(b":")
            _walk(value[key], write)
        write(b"}")
    elif isinstance(value, list):
        write(b"[")
        for index, item in enumerate(value):
            if index:
                write(b",")
            _walk(item, write)
        write(b"]")
    elif isinstance(value, _Number):
        write(str.__str__(value).encode())
    elif isinstance(value, str):
        write(_go_string(value))
    elif value is True or value is False or value is None:
        write(json.dumps(value).encode())
    else:  # a number from YAML
        write(json.dumps(value).encode())


_GO_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\b": "\\b",
    "\f": "\\f",
}


def _go_string(text: str) -> bytes:
    """``text`` as Go's encoding/json writes it with HTML escaping off."""
    out = []
    for character in text:
        if character in _GO_ESCAPES:
            out.append(_GO_ESCAPES[character])
        elif character < " " or character in "\u2028\u2029":
            out.append(f"\\u{ord(character):04x}")
        else:
            out.append(character)
    return ('"' + "".join(out) + '"').encode("utf-8", "replace")
