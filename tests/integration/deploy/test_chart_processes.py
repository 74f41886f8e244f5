"""The chart's pods as plain processes, since no cluster runs here: what `helm template`
renders for the OPA-sidecar install is run as written — the migration Job's two steps
as the PostgreSQL owner role, the OPA sidecar with its rendered config loading a signed
bundle from a bundle service, and `gateway serve` as the app role until the rendered
readiness probe passes; and the same sidecar refusing a bundle signed by another key.
Only what a cluster would provide is substituted: the Secrets' values, loopback ports
for the pod-local ones, and container paths mapped onto a temporary folder laid out
like the image (tests/support/helm.py `localize`)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from gateway.audit.export import database_source
from gateway.identity import generate_dev_issuer
from gateway.store import create_engine
from gateway.tlog.verifier import verify_log
from tests.support.helm import CI_VALUES, REPO, Rendered, container, localize, render
from tests.support.opa import opa_binary
from tests.support.pg_roles import PG_ADMIN_URL, RoleDatabase, role_database
from tests.support.processes import Process, free_port, spawn, wait_for_http
from tests.support.waiting import eventually

pytestmark = pytest.mark.postgres

REVISION = "chart-test-revision"
KEY_ID = "gateway-policy"


@pytest.fixture
def roles() -> Iterator[RoleDatabase]:
    # roles.sql once, before the install, as an operator does (docs/kubernetes.md).
    with role_database(PG_ADMIN_URL) as roles:
        yield roles


def libpq(url: str) -> str:
    """The Secrets hold libpq URLs: psql takes them, and so does the gateway."""
    return sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def pem_pair(directory: Path) -> tuple[Path, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private, public = directory / "policy-signing.pem", directory / "policy-signing.pub.pem"
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
    return private, public


def signed_bundle(out: Path, signing_key: Path) -> None:
    """The shipped policy as a production bundle (docs/policies.md, "Production")."""
    out.parent.mkdir(parents=True)
    subprocess.run(
        [
            opa_binary(),
            "build",
            "-b",
            str(REPO / "policies"),
            *("--ignore", "*_test.rego", "--ignore", "conformance"),
            *("--revision", REVISION),
            *("--signing-key", str(signing_key), "--signing-alg", "RS256"),
            *("--verification-key-id", KEY_ID),
            *("-o", str(out)),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )


def write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def ed25519_pem() -> str:
    return (
        ed25519.Ed25519PrivateKey.generate()
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )


def argv(spec: dict[str, Any], root: Path, env: dict[str, str]) -> list[str]:
    """A container's command line as the kubelet runs it: $(VAR) from its env, the
    image's paths mapped onto ``root``, `gateway` being this environment's CLI."""
    words = [*spec.get("command", []), *spec.get("args", [])]
    out = []
    for word in words:
        for name, value in env.items():
            word = word.replace(f"$({name})", value)
        out.append(localize(word, root))
    if out[0] == "gateway":
        out[0] = str(Path(sys.executable).with_name("gateway"))
    return out


def rendered_install(
    tmp_path: Path, bundle_port: int, issuer_key: Path, roles: RoleDatabase | None = None
) -> Rendered:
    issuer_values = tmp_path / "values.yaml"
    issuer_values.write_text(
        yaml.safe_dump(
            {
                "config": {
                    "identity": {
                        "issuers": [
                            {
                                "issuer": "https://issuer.test",
                                "key_files": [str(issuer_key)],
                            }
                        ]
                    },
                },
                "database": {"app": {"role": roles.app}, "owner": {"role": roles.owner}}
                if roles
                else {},
                "policy": {
                    "bundle": {
                        "serviceUrl": f"http://127.0.0.1:{bundle_port}",
                        # The service here needs no token.
                        "bearerToken": {"secretName": ""},
                    }
                },
            }
        )
    )
    return render([CI_VALUES / "opa-bundle-values.yaml", issuer_values])


def start_sidecar(
    rendered: Rendered, root: Path, tmp_path: Path, opa_port: int, diag_port: int
) -> Process:
    """The `opa` container of the gateway's pod, its API and health on free ports."""
    write(
        root / "etc/opa/config/config.yaml",
        rendered.get("ConfigMap", "gw-gateway-opa")["data"]["config.yaml"],
    )
    args = argv(container(rendered.get("Deployment", "gw-gateway"), "opa"), root, {})
    assert args[0] == "run"
    args = [
        a.replace("127.0.0.1:8181", f"127.0.0.1:{opa_port}").replace(
            "0.0.0.0:8282", f"127.0.0.1:{diag_port}"
        )
        for a in args
    ]
    return spawn([opa_binary(), *args], tmp_path / "opa.log")


def serve_bundles(directory: Path, port: int, tmp_path: Path) -> Process:
    """The bundle service: static files over HTTP on loopback."""
    return spawn(
        [
            *(sys.executable, "-m", "http.server", str(port)),
            *("--bind", "127.0.0.1", "--directory", str(directory)),
        ],
        tmp_path / "bundles.log",
    )


def test_sidecar_refuses_a_bundle_signed_by_another_key(tmp_path: Path) -> None:
    root = tmp_path / "root"
    _, trusted = pem_pair(tmp_path)
    (tmp_path / "other").mkdir()
    other, _ = pem_pair(tmp_path / "other")
    signed_bundle(tmp_path / "bundles" / "gateway" / "bundle.tar.gz", other)
    _, issuer_key = generate_dev_issuer(tmp_path / "issuer")
    bundle_port, opa_port, diag_port = free_port(), free_port(), free_port()
    rendered = rendered_install(tmp_path, bundle_port, issuer_key)
    write(root / "etc/opa/keys/policy-signing.pub.pem", trusted.read_text())
    processes = [serve_bundles(tmp_path / "bundles", bundle_port, tmp_path)]
    try:
        opa = start_sidecar(rendered, root, tmp_path, opa_port, diag_port)
        processes.append(opa)
        # OPA fetched the bundle and refused it.
        def refused() -> bool:
            assert opa.popen.poll() is None, opa.log()
            return "Bundle load failed: failed to verify" in opa.log()

        eventually(refused, "OPA refusing the bundle", detail=opa.log)
        health = httpx.get(f"http://127.0.0.1:{diag_port}/health?bundles", timeout=5)
        assert health.status_code != 200
        bundles = httpx.get(f"http://127.0.0.1:{opa_port}/v1/data/system/bundles", timeout=5)
        assert bundles.json().get("result", {}) == {}  # nothing activated
    finally:
        for process in reversed(processes):
            process.stop()


def test_rendered_pods_run_as_processes(roles: RoleDatabase, tmp_path: Path) -> None:
    root = tmp_path / "root"
    private, public = pem_pair(tmp_path)
    signed_bundle(tmp_path / "bundles" / "gateway" / "bundle.tar.gz", private)
    _, issuer_key = generate_dev_issuer(tmp_path / "issuer")
    bundle_port = free_port()
    rendered = rendered_install(tmp_path, bundle_port, issuer_key, roles)
    deployment = rendered.get("Deployment", "gw-gateway")
    job = rendered.get("Job", "gw-gateway-migration")

    # What the cluster provides: the Secrets' and ConfigMaps' contents at their mounts.
    owner_env = {"GATEWAY_DB_URL": libpq(roles.owner_url)}
    app_env = {"GATEWAY_DB_URL": libpq(roles.app_url)}
    hook_data = rendered.get("ConfigMap", "gw-gateway-migration")["data"]
    write(root / "etc/gateway/grants/grants.sql", hook_data["grants.sql"])
    write(root / "etc/opa/keys/policy-signing.pub.pem", public.read_text())
    for name in ("gateway-signing.pem", "audit-signing.pem"):
        write(root / "var/lib/gateway/keys" / name, ed25519_pem(), 0o600)
    # The conformance ConfigMap: the cases of the policy the bundle was built from.
    (root / "etc/gateway").mkdir(parents=True, exist_ok=True)
    (root / "etc/gateway/conformance").symlink_to(REPO / "policies" / "conformance")

    # Pod-local ports on loopback (in a pod they are the pod's own).
    opa_port, diag_port, http_port = free_port(), free_port(), free_port()
    config = yaml.safe_load(localize(hook_data["gateway.yaml"], root))
    assert config["policy"]["url"] == "http://127.0.0.1:8181"
    config["policy"]["url"] = f"http://127.0.0.1:{opa_port}"
    config["server"]["port"] = http_port
    write(root / "etc/gateway/config/gateway.yaml", yaml.safe_dump(config))

    # The migration Job: `gateway db migrate`, then grants.sql, both as the owner.
    for step in ("migrate", "grants"):
        done = subprocess.run(
            argv(container(job, step), root, owner_env),
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, **owner_env},
            cwd=tmp_path,
            check=False,
        )
        assert done.returncode == 0, f"{step}: {done.stdout}{done.stderr}"
    admin = create_engine(roles.admin_url)
    try:
        with admin.connect() as conn:

            def may(table: str, privilege: str) -> bool:
                return bool(
                    conn.execute(
                        sa.text("SELECT has_table_privilege(:role, :table, :privilege)"),
                        {"role": roles.app, "table": table, "privilege": privilege},
                    ).scalar()
                )

            # The grants step gave the app role what serving needs, and no more.
            assert may("approvals", "UPDATE") and may("runs", "DELETE")
            assert may("audit_entries", "INSERT") and not may("audit_entries", "UPDATE")
            assert not may("audit_payloads", "DELETE")
    finally:
        admin.dispose()

    processes: list[Process] = []
    try:
        processes.append(serve_bundles(tmp_path / "bundles", bundle_port, tmp_path))
        opa = start_sidecar(rendered, root, tmp_path, opa_port, diag_port)
        processes.append(opa)
        probe = container(deployment, "opa")["readinessProbe"]["httpGet"]["path"]
        wait_for_http(f"http://127.0.0.1:{diag_port}{probe}", opa, timeout=60)

        gateway_spec = container(deployment, "gateway")
        server = spawn(argv(gateway_spec, root, app_env), tmp_path / "gateway.log", env=app_env)
        processes.append(server)
        ready = gateway_spec["readinessProbe"]["httpGet"]["path"]
        live = gateway_spec["livenessProbe"]["httpGet"]["path"]
        wait_for_http(f"http://127.0.0.1:{http_port}{ready}", server, timeout=120)
        assert httpx.get(f"http://127.0.0.1:{http_port}{live}", timeout=5).status_code == 200
        checks = httpx.get(f"http://127.0.0.1:{http_port}{ready}", timeout=5).json()["checks"]
        assert checks["policy"] == {"ok": True, "engine": "opa", "revision": REVISION}
        assert checks["database"] == {"ok": True}
    finally:
        for process in reversed(processes):
            process.stop()
    log = server.log()
    assert "permission denied" not in log, log
    assert "conformance" in log  # the cases ran against the sidecar's bundle
    owner = create_engine(roles.owner_url)
    try:
        report = verify_log(database_source(owner))
    finally:
        owner.dispose()
    assert report.ok, report.faults
    assert report.size >= 1  # policy.loaded, appended by the app role
