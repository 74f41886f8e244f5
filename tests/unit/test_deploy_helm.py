"""deploy/helm/gateway with the real Helm (`helm lint --strict`, `helm template`) and our
kubecheck, which decodes every rendered document strictly into the Kubernetes API's Go
types. No cluster runs here; tests/integration/deploy runs the rendered pods' commands
as processes on a real PostgreSQL and OPA."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.support.helm import (
    APP_SECRET,
    CHART,
    CI_VALUES,
    OWNER_SECRET,
    REPO,
    Rendered,
    container,
    helm,
    kubecheck,
    localize,
    pod_spec,
    render,
    render_error,
)

VALUES = sorted(CI_VALUES.glob("*.yaml"))
EMBEDDED = CI_VALUES / "embedded-values.yaml"
OPA_BUNDLE = CI_VALUES / "opa-bundle-values.yaml"
WORKER = CI_VALUES / "worker-values.yaml"
GATEWAY_FLAGS = ("-gateway", "-owner-secret", OWNER_SECRET, "-app-secret", APP_SECRET)


def test_every_values_file_is_tested() -> None:
    assert [p.name for p in VALUES] == [
        "embedded-values.yaml",
        "opa-bundle-values.yaml",
        "worker-values.yaml",
    ]


@pytest.mark.parametrize("values", VALUES, ids=lambda p: p.stem)
def test_helm_lint_strict(values: Path) -> None:
    done = helm("lint", "--strict", str(CHART), "-f", str(values))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 chart(s) failed" in done.stdout


@pytest.mark.parametrize("values", VALUES, ids=lambda p: p.stem)
def test_rendered_manifests_pass_kubecheck(values: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(render([values]).text)
    done = kubecheck(manifest, *GATEWAY_FLAGS)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"kubecheck: ok, \d+ document\(s\)", done.stdout)


def test_embedded_install_renders_its_objects() -> None:
    rendered = render([EMBEDDED])
    assert rendered.kinds() == [
        ("ConfigMap", "gw-gateway"),
        ("ConfigMap", "gw-gateway-migration"),
        ("Deployment", "gw-gateway"),
        ("Job", "gw-gateway-migration"),
        ("PodDisruptionBudget", "gw-gateway"),
        ("Service", "gw-gateway"),
        ("ServiceAccount", "gw-gateway"),
    ]
    deployment = rendered.get("Deployment", "gw-gateway")
    assert [c["name"] for c in pod_spec(deployment)["containers"]] == ["gateway"]
    gateway = container(deployment, "gateway")
    assert gateway["command"] == ["gateway"]
    assert gateway["args"] == ["serve", "--config", "/etc/gateway/config/gateway.yaml"]
    assert gateway["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert gateway["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert gateway["env"][0]["valueFrom"]["secretKeyRef"] == {"name": APP_SECRET, "key": "url"}
    # MCP sessions live in one replica: a client stays on the one it reached.
    assert rendered.get("Service", "gw-gateway")["spec"]["sessionAffinity"] == "ClientIP"


def test_migration_job_runs_as_the_owner_before_install_and_upgrade() -> None:
    rendered = render([EMBEDDED])
    job = rendered.get("Job", "gw-gateway-migration")
    hooks = job["metadata"]["annotations"]["helm.sh/hook"].split(",")
    assert sorted(hooks) == ["pre-install", "pre-upgrade"]
    migrate = container(job, "migrate")
    assert migrate["args"][:2] == ["db", "migrate"]
    grants = container(job, "grants")
    assert grants["command"] == ["psql"]
    assert "--set=owner_role=gateway_owner" in grants["args"]
    assert "--set=app_role=gateway_app" in grants["args"]
    for step in (migrate, grants):
        assert step["env"][0]["valueFrom"]["secretKeyRef"] == {"name": OWNER_SECRET, "key": "url"}
    # The hook ConfigMap exists before the Job (lower weight) and carries the same config.
    hook_config = rendered.get("ConfigMap", "gw-gateway-migration")
    assert int(hook_config["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(
        job["metadata"]["annotations"]["helm.sh/hook-weight"]
    )
    served = rendered.get("ConfigMap", "gw-gateway")["data"]["gateway.yaml"]
    assert hook_config["data"]["gateway.yaml"] == served


def test_chart_ships_grants_sql_as_deploy_postgres_states_it() -> None:
    shipped = (CHART / "files" / "grants.sql").read_text()
    assert shipped == (REPO / "deploy" / "postgres" / "grants.sql").read_text()
    assert "\\ir grants.sql" in (REPO / "deploy" / "postgres" / "roles.sql").read_text()


def test_opa_sidecar_loads_a_signed_bundle_on_loopback() -> None:
    rendered = render([OPA_BUNDLE])
    deployment = rendered.get("Deployment", "gw-gateway")
    opa = container(deployment, "opa")
    assert "--addr=127.0.0.1:8181" in opa["args"]  # the REST API: the pod's loopback only
    assert "--diagnostic-addr=0.0.0.0:8282" in opa["args"]  # /health for the kubelet
    assert "--set-file=keys.gateway-policy.key=/etc/opa/keys/policy-signing.pub.pem" in opa["args"]
    assert opa["readinessProbe"]["httpGet"]["path"] == "/health?bundles"
    opa_config = yaml.safe_load(rendered.get("ConfigMap", "gw-gateway-opa")["data"]["config.yaml"])
    assert opa_config["bundles"]["gateway"]["signing"] == {"keyid": "gateway-policy"}
    assert opa_config["keys"] == {"gateway-policy": {"algorithm": "RS256"}}
    assert opa_config["services"]["policy-bundles"] == {
        "url": "https://bundles.internal.example",
        "credentials": {"bearer": {"token_path": "/etc/opa/token/token"}},
    }
    config = yaml.safe_load(rendered.get("ConfigMap", "gw-gateway")["data"]["gateway.yaml"])
    assert config["policy"] == {
        "engine": "opa",
        "url": "http://127.0.0.1:8181",
        "timeout_ms": 250,
        "conformance": {"on_start": "enforce", "path": "/etc/gateway/conformance"},
    }
    volumes = {v["name"]: v for v in pod_spec(deployment)["volumes"]}
    assert volumes["opa-key"]["configMap"]["name"] == "gw-policy-key"
    assert volumes["opa-token"]["secret"]["secretName"] == "gw-bundle-token"


def test_worker_deployment_has_its_own_sidecar_and_no_service() -> None:
    rendered = render([WORKER])
    worker = rendered.get("Deployment", "gw-gateway-worker")
    assert worker["spec"]["replicas"] == 2
    main = container(worker, "worker")
    assert main["args"] == [
        *("worker", "--config", "/etc/gateway/config/gateway.yaml"),
        *("--workers", "4"),
    ]
    assert "livenessProbe" not in main  # no HTTP to probe
    assert container(worker, "opa")["args"][0] == "run"  # the worker decides policy too
    # The Service and the PodDisruptionBudget select the servers only.
    service = rendered.get("Service", "gw-gateway")
    assert service["spec"]["selector"]["app.kubernetes.io/component"] == "server"
    assert worker["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "worker"
    assert ("Deployment", "gw-gateway-worker") not in render([EMBEDDED]).kinds()


def test_image_and_opa_versions_follow_the_project() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert chart["appVersion"] == project["version"]
    rendered = render([OPA_BUNDLE])
    deployment = rendered.get("Deployment", "gw-gateway")
    assert container(deployment, "gateway")["image"] == f"agent-tool-gateway:{project['version']}"
    # The sidecar runs the OPA version the test suite runs.
    opa_version = re.search(r"^OPA_VERSION := v(\S+)$", (REPO / "Makefile").read_text(), re.M)
    assert opa_version is not None
    assert container(deployment, "opa")["image"] == f"openpolicyagent/opa:{opa_version[1]}-static"


def test_values_never_hold_secrets() -> None:
    """Every Secret is referenced, none rendered: the chart has no Secret template."""
    for values in VALUES:
        assert all(d["kind"] != "Secret" for d in render([values]).docs)


# --- what the chart refuses to render ------------------------------------------------


def test_default_values_need_an_issuer() -> None:
    assert "config.identity.issuers is required" in render_error([])


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["config.storage.url=sqlite:///x.db"], "config.storage is set by the chart"),
        (["config.server.port=9000"], "config.server.port is set by the chart"),
        (["config.audit.signing_key_file=/k.pem"], "config.audit.signing_key_file is set"),
        (
            ["policy.bundle.serviceUrl=https://b", "policy.bundle.resource=b.tar.gz"],
            "policy.bundle is loaded by the OPA sidecar",
        ),
        (["policy.engine=opa"], "policy.engine opa needs policy.bundle.serviceUrl"),
        (["policy.engin=opa"], "additional properties 'engin' not allowed"),
    ],
    ids=["storage", "server-port", "audit-key", "bundle-without-opa", "opa-without-bundle", "typo"],
)
def test_refused_values(sets: list[str], message: str) -> None:
    assert message in render_error([EMBEDDED], sets)


def test_opa_bundle_must_be_signed() -> None:
    error = render_error([OPA_BUNDLE], ["policy.bundle.signing.publicKey.configMap="])
    assert "give exactly one of configMap and secret" in error


# --- kubecheck fails on broken manifests ---------------------------------------------


def _embedded_manifest(tmp_path: Path, sets: list[str] | None = None) -> tuple[Path, Rendered]:
    rendered = render([EMBEDDED], sets)
    path = tmp_path / "manifest.yaml"
    path.write_text(rendered.text)
    return path, rendered


def test_kubecheck_refuses_a_misspelt_field(tmp_path: Path) -> None:
    path, _ = _embedded_manifest(tmp_path)
    text = path.read_text()
    assert text.count("readinessProbe:") == 1
    path.write_text(text.replace("readinessProbe:", "readinesProbe:"))
    done = kubecheck(path)
    assert done.returncode == 1
    assert 'unknown field "spec.template.spec.containers[0].readinesProbe"' in done.stdout


def test_kubecheck_refuses_a_wrong_type_and_an_unknown_kind(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "apiVersion: v1\nkind: Service\nmetadata: {name: s}\n"
        "spec: {ports: [{port: eighty}], selector: {app: s}}\n"
        "---\napiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n"
    )
    done = kubecheck(path)
    assert done.returncode == 1
    assert "Service/s" in done.stdout and "cannot unmarshal string" in done.stdout
    assert "example.com/v1 Widget is not a kind this checker knows" in done.stdout


def test_kubecheck_refuses_a_dangling_volume_and_selector(tmp_path: Path) -> None:
    path, _ = _embedded_manifest(tmp_path)
    text = path.read_text()
    text = text.replace("- {name: tmp, mountPath: /tmp}", "- {name: scratch, mountPath: /tmp}", 1)
    # The Service's selector (the only one followed by its ports).
    text = text.replace(
        "app.kubernetes.io/component: server\n  ports:",
        "app.kubernetes.io/component: api\n  ports:",
    )
    path.write_text(text)
    done = kubecheck(path)
    assert done.returncode == 1
    assert 'refers to volume "scratch", which the pod does not define' in done.stdout
    assert "Service/gw-gateway: spec.selector" in done.stdout and "matches no" in done.stdout


def test_kubecheck_gateway_refuses_the_owner_secret_for_serving(tmp_path: Path) -> None:
    path, _ = _embedded_manifest(tmp_path, [f"database.app.secretName={OWNER_SECRET}"])
    assert kubecheck(path).returncode == 0  # valid Kubernetes, wrong for the gateway
    done = kubecheck(path, "-gateway")
    assert done.returncode == 1
    assert "the gateway would run as the owner role" in done.stdout


def test_kubecheck_gateway_refuses_a_writable_root_and_a_wrong_probe(tmp_path: Path) -> None:
    path, _ = _embedded_manifest(tmp_path, ["securityContext.readOnlyRootFilesystem=false"])
    path.write_text(path.read_text().replace("path: /readyz", "path: /healthz"))
    done = kubecheck(path, *GATEWAY_FLAGS)
    assert done.returncode == 1
    assert 'container "gateway": readOnlyRootFilesystem must be true' in done.stdout
    assert 'container "migrate": readOnlyRootFilesystem must be true' in done.stdout
    assert 'readinessProbe asks "/healthz", not /readyz' in done.stdout


# --- the rendered config is one the gateway accepts ----------------------------------


@pytest.mark.parametrize("values", VALUES, ids=lambda p: p.stem)
def test_rendered_config_passes_check_config(values: Path, tmp_path: Path) -> None:
    rendered = render([values])
    config = tmp_path / "gateway.yaml"
    served = rendered.get("ConfigMap", "gw-gateway")["data"]["gateway.yaml"]
    config.write_text(localize(served, tmp_path))
    env = {**os.environ, "GATEWAY_DB_URL": "postgresql://gw_app:pw@db.internal:5432/gateway"}
    done = subprocess.run(
        [str(Path(sys.executable).with_name("gateway")), "check-config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=REPO,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{config}: ok" in done.stdout
    assert "storage    db.internal:5432/gateway" in done.stdout
    engine = yaml.safe_load(values.read_text()).get("policy", {}).get("engine", "embedded")
    assert re.search(rf"policy     {engine} ", done.stdout), done.stdout
