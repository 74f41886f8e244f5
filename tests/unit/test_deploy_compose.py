"""deploy/compose.yaml, checked by its structure: Docker does not run where the tests
run, so this is no substitute for `docker compose up`. What it pins is what the file
must say: the owner role migrates and grants, the app role serves, OPA is a sidecar on
the gateway's loopback loading a signed bundle, and the image's paths and user are the
ones the Dockerfile and the Helm chart use."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from gateway.config import OpaPolicyConfig, load_config
from tests.support.helm import CHART, REPO

COMPOSE = REPO / "deploy" / "compose.yaml"
CONFIG_IN_IMAGE = "/etc/gateway/config/gateway.yaml"


@pytest.fixture(scope="module")
def services() -> dict:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def test_services_and_their_order(services: dict) -> None:
    assert sorted(services) == ["db", "gateway", "grants", "migrate", "opa", "roles"]
    after = {
        name: {dep: cond.get("condition") for dep, cond in spec["depends_on"].items()}
        for name, spec in services.items()
        if isinstance(spec.get("depends_on"), dict)
    }
    # roles.sql, then the migration, then the grants, then the gateway.
    assert after["roles"] == {"db": "service_healthy"}
    assert after["migrate"] == {"roles": "service_completed_successfully"}
    assert after["grants"] == {"migrate": "service_completed_successfully"}
    assert after["gateway"] == {"grants": "service_completed_successfully"}


def test_roles_script_runs_as_the_superuser_with_both_roles(services: dict) -> None:
    command = services["roles"]["command"]
    assert command[0] == "psql" and "--file=/sql/roles.sql" in command
    assert "--username=postgres" in command
    assert "--set=owner_role=gateway_owner" in command
    assert "--set=app_role=gateway_app" in command
    assert services["roles"]["volumes"] == ["./postgres:/sql:ro"]
    assert (COMPOSE.parent / "postgres" / "roles.sql").exists()


def test_owner_migrates_and_grants_app_role_serves(services: dict) -> None:
    def role_of(url: str) -> str:
        match = re.fullmatch(r"postgresql://(\w+):\$\{(\w+)\}@db:5432/gateway", url)
        assert match, url
        return f"{match[1]} {match[2]}"

    assert services["migrate"]["command"] == ["db", "migrate", "--config", CONFIG_IN_IMAGE]
    assert role_of(services["migrate"]["environment"]["GATEWAY_DB_URL"]) == (
        "gateway_owner GATEWAY_OWNER_PASSWORD"
    )
    grants = services["grants"]["command"]
    assert grants[0] == "psql" and "--file=/sql/grants.sql" in grants
    assert role_of(grants[1]) == "gateway_owner GATEWAY_OWNER_PASSWORD"
    assert (COMPOSE.parent / "postgres" / "grants.sql").exists()
    assert services["gateway"]["command"] == ["serve", "--config", CONFIG_IN_IMAGE]
    assert role_of(services["gateway"]["environment"]["GATEWAY_DB_URL"]) == (
        "gateway_app GATEWAY_APP_PASSWORD"
    )
    # The superuser's password reaches only the database and the roles script.
    for name in ("migrate", "grants", "gateway", "opa"):
        assert "GATEWAY_DB_PASSWORD" not in yaml.safe_dump(services[name])


def test_opa_is_a_sidecar_loading_a_signed_bundle(services: dict) -> None:
    opa = services["opa"]
    assert opa["network_mode"] == "service:gateway"  # the gateway's loopback
    assert "--addr=127.0.0.1:8181" in opa["command"]
    assert "--verification-key=/etc/opa/policy-signing.pub.pem" in opa["command"]
    assert "--bundle" in opa["command"] and opa["command"][-1] == "/etc/opa/bundle.tar.gz"
    assert "ports" not in opa
    # The same OPA as the chart's sidecar and the test suite's.
    values = yaml.safe_load((CHART / "values.yaml").read_text())["policy"]["opa"]["image"]
    assert opa["image"] == f"{values['repository']}:{values['tag']}"


def test_example_config_for_compose_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_DB_URL", "postgresql://gateway_app:pw@db:5432/gateway")
    config = load_config(REPO / "deploy" / "compose.gateway.yaml")
    assert isinstance(config.policy, OpaPolicyConfig)
    assert config.policy.url == "http://127.0.0.1:8181"
    assert str(config.data_dir) == "/var/lib/gateway/data"
    assert config.identity.signing_key_file.parent == Path("/var/lib/gateway/keys")
    assert config.audit.signing_key_file.parent == Path("/var/lib/gateway/keys")


def test_dockerfile_matches_the_chart_and_compose(services: dict) -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    assert f'CMD ["serve", "--config", "{CONFIG_IN_IMAGE}"]' in dockerfile
    assert f"ENV GATEWAY_CONFIG={CONFIG_IN_IMAGE}" in dockerfile
    assert re.search(r"^USER 10001$", dockerfile, re.M)
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["podSecurityContext"]["runAsUser"] == 10001
    # The image makes the folders the chart and compose mount, owned by its user.
    for folder in (
        "/var/lib/gateway/keys",
        "/var/lib/gateway/data",
        "/var/lib/gateway/checkpoints",
    ):
        assert folder in dockerfile
    assert "/etc/gateway/config:ro" in services["gateway"]["volumes"][0]
    assert "COPY --from=build /app/policies /etc/gateway/policies" in dockerfile
    assert values["policy"]["embedded"]["path"] == "/etc/gateway/policies"
