"""IBM ContextForge as a peer in the comparison: its own virtual environment, started
as a real process on loopback with bench/contextforge.env, the bench upstream
registered with it.

    .venv/bin/python -m bench.contextforge setup    # idempotent; prints what it does

The setup makes ``var/bench/contextforge-<version>/`` (git-ignored) with Python 3.12
(ContextForge 1.1.0 needs ≥ 3.12; found as ``$BENCH_PYTHON312``, under ``pyenv root``,
or as ``python3.12`` on the PATH) and installs the pinned package from PyPI with uv
(the project's own, from .tools) or pip. `make bench` runs it first; `make test` never.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.processes import REPO, Process, free_port, wait_for_http

PACKAGE = "mcp-contextforge-gateway"
VERSION = "1.1.0"
VENV = REPO / "var" / "bench" / f"contextforge-{VERSION}"
CONFIG = Path(__file__).resolve().parent / "contextforge.env"
ADMIN = "admin@example.com"
UPSTREAM_NAME = "up"  # its tools become "up-<tool>", underscores as hyphens


def _say(message: str) -> None:
    print(f"[contextforge] {message}", flush=True)


def find_python312() -> str:
    """A Python 3.12 interpreter, or an error saying where it was looked for."""
    candidates = []
    if env := os.environ.get("BENCH_PYTHON312"):
        candidates.append(Path(env))
    pyenv_root = os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv")
    if shutil.which("pyenv"):
        out = subprocess.run(["pyenv", "root"], capture_output=True, text=True, check=False)
        pyenv_root = out.stdout.strip() or pyenv_root
    candidates += sorted(Path(pyenv_root, "versions").glob("3.12*/bin/python3.12"), reverse=True)
    if found := shutil.which("python3.12"):
        candidates.append(Path(found))
    for candidate in candidates:
        if candidate.exists():
            return str(candidate)
    raise RuntimeError(
        "ContextForge needs Python 3.12: none found (set BENCH_PYTHON312, or install it "
        "under pyenv)"
    )


def installed_version() -> str | None:
    python = VENV / "bin" / "python"
    if not python.exists():
        return None
    probe = f"import importlib.metadata as m; print(m.version({PACKAGE!r}))"
    out = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, check=False)
    return out.stdout.strip() or None


def setup() -> Path:
    """Makes the virtual environment with the pinned ContextForge, unless it is there."""
    if installed_version() == VERSION:
        _say(f"{PACKAGE} {VERSION} already installed in {VENV.relative_to(REPO)}")
        return VENV
    python = find_python312()
    uv = shutil.which("uv") or str(REPO / ".tools" / "uv" / "bin" / "uv")
    if VENV.exists():
        _say(f"removing the incomplete environment {VENV.relative_to(REPO)}")
        shutil.rmtree(VENV)
    VENV.parent.mkdir(parents=True, exist_ok=True)
    _say(f"creating {VENV.relative_to(REPO)} with {python}")
    if Path(uv).exists():
        subprocess.run([uv, "venv", "--quiet", "--python", python, str(VENV)], check=True)
        install = [uv, "pip", "install", "--python", str(VENV / "bin" / "python")]
    else:
        subprocess.run([python, "-m", "venv", str(VENV)], check=True)
        install = [str(VENV / "bin" / "pip"), "install", "--quiet"]
    _say(f"installing {PACKAGE}=={VERSION} from PyPI (about a minute)")
    subprocess.run([*install, f"{PACKAGE}=={VERSION}"], check=True)
    if installed_version() != VERSION:
        raise RuntimeError(f"{PACKAGE} {VERSION} did not install into {VENV}")
    _say("done")
    return VENV


@dataclass
class ContextForge:
    """A running ContextForge with the upstream registered behind a virtual server."""

    process: Process
    port: int
    token: str
    server_id: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def mcp_url(self) -> str:
        return f"{self.url}/servers/{self.server_id}/mcp"

    @property
    def pid(self) -> int:
        return self.process.popen.pid

    def stop(self) -> None:
        """Stops it, then whatever is left of its process group: its pool of forked
        workers (concurrent.futures) outlives a main process that had to be killed
        after the stop timeout, and ignores SIGTERM."""
        self.process.stop()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.popen.pid, signal.SIGKILL)  # its own session's group

    @classmethod
    def start(cls, directory: Path, upstream_url: str) -> ContextForge:
        if installed_version() != VERSION:
            raise RuntimeError(
                "ContextForge is not installed: run `python -m bench.contextforge setup`"
            )
        directory.mkdir(parents=True, exist_ok=True)
        python = str(VENV / "bin" / "python")
        secrets_env = _run([python, "-m", "mcpgateway.scripts.init_secrets", "--stdout"], directory)
        port = free_port()
        env_file = "\n".join(
            [
                CONFIG.read_text(),
                "# --- added for this run by bench/contextforge.py ---",
                secrets_env.strip(),
                "HOST=127.0.0.1",
                f"PORT={port}",
                "DATABASE_URL=sqlite:///./mcp.db",
                "",
            ]
        )
        (directory / ".env").write_text(env_file)
        log_path = directory / "contextforge.log"
        popen = subprocess.Popen(
            [str(VENV / "bin" / "mcpgateway"), "--host", "127.0.0.1", "--port", str(port)],
            stdout=log_path.open("ab"),
            stderr=subprocess.STDOUT,
            cwd=directory,  # it reads ./.env
            env=_clean_env(),
            start_new_session=True,
        )
        process = Process(popen, log_path)
        # The first start creates and migrates its database (≈ 20 s on this machine).
        wait_for_http(f"http://127.0.0.1:{port}/health", process, timeout=180)
        secret = _env_value(secrets_env, "JWT_SECRET_KEY")
        token = (
            _run(
                [
                    python,
                    "-m",
                    "mcpgateway.utils.create_jwt_token",
                    "--username",
                    ADMIN,
                    "--exp",  # minutes: outlives the longest run, as the gateway's token does
                    "360",
                    "--secret",
                    secret,
                ],
                directory,
            )
            .strip()
            .splitlines()[-1]
        )
        try:
            server_id = _register(f"http://127.0.0.1:{port}", token, upstream_url)
        except Exception:
            process.stop()
            raise
        return cls(process, port, token, server_id)


def _register(url: str, token: str, upstream_url: str) -> str:
    """Registers the upstream and bundles its tools in a virtual server (its README's
    end-to-end demo); returns the virtual server's id."""
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, headers=headers, timeout=60) as http:
        gateway = {"name": UPSTREAM_NAME, "url": upstream_url, "transport": "STREAMABLEHTTP"}
        http.post("/gateways", json=gateway).raise_for_status()
        tools = http.get("/tools").raise_for_status().json()
        ids = [t["id"] for t in tools if t["name"].startswith(f"{UPSTREAM_NAME}-")]
        if not ids:
            raise RuntimeError(f"ContextForge listed no tools of the upstream: {tools!r}")
        server = {"name": "bench", "description": "the bench upstream", "associated_tools": ids}
        created = http.post("/servers", json={"server": server}).raise_for_status().json()
        return str(created["id"])


def rename(upstream_name: str) -> str:
    """The name ContextForge gives an upstream tool: the gateway's slug, a hyphen, and
    the tool's name with underscores as hyphens."""
    return f"{UPSTREAM_NAME}-{upstream_name.replace('_', '-')}"


def _run(args: list[str], cwd: Path) -> str:
    out = subprocess.run(
        args, capture_output=True, text=True, cwd=cwd, env=_clean_env(), check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:3])} failed:\n{out.stderr[-2000:]}")
    return out.stdout


def _clean_env() -> dict[str, str]:
    # Only what a shell needs: a setting of ours in the environment (PORT, DATABASE_URL…)
    # must not change ContextForge's configuration behind the committed file's back.
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")
    return {k: os.environ[k] for k in keep if k in os.environ}


def _env_value(env_text: str, name: str) -> str:
    for line in env_text.splitlines():
        if line.startswith(f"{name}="):
            return line.split("=", 1)[1].strip()
    raise RuntimeError(f"init_secrets printed no {name}")


def main() -> None:
    if sys.argv[1:] != ["setup"]:
        raise SystemExit("usage: python -m bench.contextforge setup")
    setup()
    print(json.dumps({"venv": str(VENV), "version": installed_version()}))


if __name__ == "__main__":
    main()
