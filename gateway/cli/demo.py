"""`gateway demo rug-pull`: see the gateway quarantine a tool whose definition changed.

A "rug-pull" is an upstream that changes a tool's description or schema after it was
reviewed, e.g. to slip instructions to the agent. This command makes the dev
gateway's demo upstream do exactly that to ``demo__read_file`` (a marker file in
var/dev/demo, gateway.demo.server), then waits until the running dev gateway has
noticed (dev mode re-reads tool lists every 2 s) and says what to look at: the tool
is gone from tools/list, calls to it are refused, `gateway tools drift` shows the
diff, and `gateway tools approve` releases it. ``--undo`` takes the change back.

Talks to the running dev gateway (its URL from var/dev, gateway.dev_state) with an
approver token it mints with the dev issuer key, like `gateway token` does.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from gateway.errors import GatewayError

TOOL = "demo__read_file"
POLL_S = 0.25


class DemoError(GatewayError):
    code = "demo_error"


def register(commands: argparse._SubParsersAction) -> None:
    demo = commands.add_parser("demo", help="show what the gateway does, on the dev gateway")
    sub = demo.add_subparsers(dest="demo_command", required=True, metavar="COMMAND")
    rug = sub.add_parser(
        "rug-pull",
        help=f"make the demo upstream change {TOOL}'s definition; see it quarantined",
        description=__doc__.split("\n\n")[1],
    )
    rug.add_argument(
        "--undo", action="store_true", help="give the demo tool its original definition back"
    )
    rug.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="seconds to wait for the gateway to notice (default 30)",
    )
    rug.set_defaults(handler=cmd_rug_pull)


def cmd_rug_pull(args: argparse.Namespace) -> int:
    from gateway.demo import RUG_PULL_MARKER
    from gateway.dev import demo_state_dir
    from gateway.dev_state import DEFAULT_DEV_DIR, dev_url

    url = dev_url()
    headers = {"Authorization": f"Bearer {_approver_token(url)}"}
    _definitions(url, headers)  # a dev gateway must answer before anything changes

    marker = demo_state_dir(DEFAULT_DEV_DIR) / RUG_PULL_MARKER
    if args.undo:
        marker.unlink(missing_ok=True)
        print(f"the demo upstream describes {TOOL} as it did before")
        print(
            "the gateway compares it with the definition approved last: if you approved "
            "the changed one, the original is now the change, quarantined in turn"
        )
        return 0
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text("the demo upstream serves a changed definition of read_file\n")
    print(f"the demo upstream now describes {TOOL} with instructions aimed at the agent")
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        rows = _definitions(url, headers, status="quarantined")
        if any(row["tool"] == TOOL for row in rows):
            print(
                f"the gateway noticed and quarantined {TOOL}: it is hidden from tools/list "
                "and every call to it is refused until an approver approves the new "
                "definition. As an approver:\n"
                "  export GATEWAY_TOKEN=$(gateway token --sub user:approver --role approver)\n"
                "  gateway tools drift                    # the change, as a diff\n"
                f"  gateway tools approve {TOOL}   # release it\n"
                "(gateway demo rug-pull --undo gives the tool its first definition back)"
            )
            return 0
        time.sleep(POLL_S)
    raise DemoError(
        f"the gateway at {url} did not quarantine {TOOL} within {args.timeout:g} s: "
        "is it the dev gateway started from this folder (make run)?"
    )


def _approver_token(url: str) -> str:
    from urllib.parse import urlsplit

    from gateway.dev import dev_setup, dev_token

    where = urlsplit(url)
    setup = dev_setup(host=where.hostname or "127.0.0.1", port=where.port or 80)
    return dev_token(setup, sub="user:approver", roles=("approver",), ttl_s=300)


def _definitions(url: str, headers: dict[str, str], *, status: str = "all") -> list[dict[str, Any]]:
    import httpx

    try:
        response = httpx.get(
            f"{url}/v1/tools/definitions", params={"status": status}, headers=headers, timeout=10
        )
    except httpx.HTTPError as exc:
        raise DemoError(
            f"no dev gateway answers at {url} ({exc}): start it with make run"
        ) from None
    if response.status_code != 200:
        raise DemoError(
            f"the gateway at {url} answered {response.status_code} to the dev approver: "
            "is it the dev gateway started from this folder (make run)?"
        )
    return list(response.json().get("definitions", []))
