"""The chart in deploy/helm/gateway, rendered by the real Helm and checked by our
kubecheck (both installed by `make test-setup`)."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "gateway"
CI_VALUES = CHART / "ci"
# The Secrets the ci/*.yaml values name.
OWNER_SECRET = "gw-db-owner"
APP_SECRET = "gw-db-app"


def _tool(variable: str, make_target: str) -> str:
    path = os.environ.get(variable)
    if not path or not Path(path).exists():
        raise RuntimeError(
            f"{make_target} is not installed: run `make test-setup` (or set {variable})"
        )
    return path


def helm_binary() -> str:
    return _tool("GATEWAY_HELM", "helm")


def kubecheck_binary() -> str:
    return _tool("GATEWAY_KUBECHECK", "kubecheck")


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [helm_binary(), *args], capture_output=True, text=True, timeout=120, check=False
    )


def template_args(values: list[Path], sets: list[str] | None = None) -> list[str]:
    args = ["template", "gw", str(CHART), "--namespace", "tools"]
    for path in values:
        args += ["-f", str(path)]
    for item in sets or []:
        args += ["--set", item]
    return args


@dataclass(frozen=True)
class Rendered:
    """`helm template` output: the text and its documents."""

    text: str
    docs: list[dict[str, Any]]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        found = [d for d in self.docs if d["kind"] == kind and d["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
        return found[0]

    def kinds(self) -> list[tuple[str, str]]:
        return sorted((d["kind"], d["metadata"]["name"]) for d in self.docs)


def render(values: list[Path], sets: list[str] | None = None) -> Rendered:
    done = helm(*template_args(values, sets))
    assert done.returncode == 0, done.stderr
    docs = [d for d in yaml.safe_load_all(done.stdout) if d]
    return Rendered(done.stdout, docs)


def render_error(values: list[Path], sets: list[str] | None = None) -> str:
    """The error of a render that must fail."""
    done = helm(*template_args(values, sets))
    assert done.returncode != 0, f"rendered although it should not:\n{done.stdout[:2000]}"
    return done.stderr


def kubecheck(manifest: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [kubecheck_binary(), *flags, str(manifest)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["spec"]["template"]["spec"]


def container(doc: dict[str, Any], name: str) -> dict[str, Any]:
    spec = pod_spec(doc)
    found = [c for c in spec.get("initContainers", []) + spec["containers"] if c["name"] == name]
    assert len(found) == 1, f"no container {name} in {doc['metadata']['name']}"
    return found[0]


def localize(text: str, root: Path) -> str:
    """Container paths onto a folder laid out like the image, with the image's policy
    (the Dockerfile copies policies/ to /etc/gateway/policies) being the repository's."""
    text = text.replace("/etc/gateway/policies", str(REPO / "policies"))
    for prefix in ("/etc/gateway/", "/var/lib/gateway/", "/etc/opa/"):
        text = text.replace(prefix, f"{root}{prefix}")
    return text
