"""Real OPA bundles for tests, and a bundle server on loopback.

`build_bundle` runs the real ``opa build -b -t wasm`` (signed with ``--signing-key``
when a key is given), exactly as docs/policies.md tells a security team to.
`BundleServer` serves one bundle over HTTP with an ETag, answers ``304`` to a matching
``If-None-Match`` as OPA's bundle servers do, and records the requests it saw.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import subprocess
import tarfile
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from tests.support.opa import opa_binary

Algorithm = Literal["RS256", "ES256", "EdDSA"]


@dataclass(frozen=True)
class KeyPair:
    algorithm: Algorithm
    private: Path
    public: Path


def generate_key(folder: Path, algorithm: Algorithm, name: str = "key") -> KeyPair:
    if algorithm == "RS256":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif algorithm == "ES256":
        key = ec.generate_private_key(ec.SECP256R1())  # type: ignore[assignment]
    else:
        key = ed25519.Ed25519PrivateKey.generate()  # type: ignore[assignment]
    folder.mkdir(parents=True, exist_ok=True)
    private, public = folder / f"{name}.pem", folder / f"{name}.pub.pem"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return KeyPair(algorithm, private, public)


def build_bundle(
    policy: Path,
    output: Path,
    *,
    revision: str,
    key: KeyPair | None = None,
    entrypoints: tuple[str, ...] = ("gateway/decision", "gateway/visible"),
) -> Path:
    """``opa build -b -t wasm`` of a policy folder (tests and conformance cases left out)."""
    command = [opa_binary(), "build", "-b", "-t", "wasm"]
    for entrypoint in entrypoints:
        command += ["-e", entrypoint]
    command += [
        "--ignore", "*_test.rego", "--ignore", "conformance",
        "--revision", revision, "-o", str(output),
    ]  # fmt: skip
    if key is not None:
        command += ["--signing-key", str(key.private), "--signing-alg", key.algorithm]
    subprocess.run([*command, "."], cwd=policy, check=True, capture_output=True, timeout=120)
    return output


def tamper(bundle: Path, output: Path, name: str, content: bytes) -> Path:
    """A copy of ``bundle`` with the file ``name`` replaced (its signature left as it was)."""
    with tarfile.open(bundle, "r:gz") as source:
        members = [(m, source.extractfile(m)) for m in source.getmembers()]
        files = {m.name: (m, f.read() if f else b"") for m, f in members}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as target:
        for member_name, (member, data) in files.items():
            if member_name.lstrip("/") == name:
                data = content
            member.size = len(data)
            target.addfile(member, io.BytesIO(data))
    output.write_bytes(buffer.getvalue())
    return output


def without(bundle: Path, output: Path, name: str) -> Path:
    """A copy of ``bundle`` without the file ``name`` (e.g. its .signatures.json)."""
    with tarfile.open(bundle, "r:gz") as source:
        kept = [(m, source.extractfile(m)) for m in source.getmembers()]
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as target:
            for member, data in kept:
                if member.name.lstrip("/") != name:
                    target.addfile(member, io.BytesIO(data.read() if data else b""))
    output.write_bytes(buffer.getvalue())
    return output


def read_member(bundle: Path, name: str) -> bytes:
    with gzip.open(bundle) as unzipped, tarfile.open(fileobj=unzipped) as archive:
        for member in archive.getmembers():
            if member.name.lstrip("/") == name:
                extracted = archive.extractfile(member)
                return extracted.read() if extracted else b""
    raise KeyError(name)


@dataclass
class BundleServer:
    """Serves `body` at any path, with an ETag of its digest; 304 on a match."""

    body: bytes = b""
    requests: list[dict[str, str | int | None]] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/bundles/gateway.tar.gz"

    @property
    def etag(self) -> str:
        return '"' + hashlib.sha256(self.body).hexdigest()[:32] + '"'

    def serve(self, bundle: Path) -> None:
        self.body = bundle.read_bytes()

    def start(self) -> BundleServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                etag = owner.etag
                seen = self.headers.get("If-None-Match")
                status = 304 if seen == etag else 200
                owner.requests.append({"if_none_match": seen, "status": status})
                self.send_response(status)
                self.send_header("ETag", etag)
                if status == 200:
                    self.send_header("Content-Type", "application/gzip")
                    self.send_header("Content-Length", str(len(owner.body)))
                    self.end_headers()
                    self.wfile.write(owner.body)
                else:
                    self.end_headers()

            def log_message(self, *args: object) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
