"""`gateway tools`: the tool catalog as the gateway sees it; `drift` and `approve` for
changed definitions (`tool_pins`)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from gateway.cli import tool_pins
from gateway.cli.common import add_config_option, config_from


def register(commands: argparse._SubParsersAction) -> None:
    tools = commands.add_parser("tools", help="list the tool catalog with risk and hashes")
    add_config_option(tools)
    tools.add_argument("--json", action="store_true", help="the catalog as JSON")
    tools.set_defaults(handler=cmd_tools)
    sub = tools.add_subparsers(dest="tools_command", required=False, metavar="COMMAND")
    tool_pins.register(sub)


def cmd_tools(args: argparse.Namespace) -> int:
    import anyio

    from gateway.components import build_components

    config = config_from(args)
    components = build_components(config)

    async def collect() -> list[dict[str, Any]]:
        # Reading the catalog checks pins like a gateway does, and records what it pins
        # or quarantines, so the audit log must be running. Quarantined tools are not
        # listed (`gateway tools drift` shows them).
        await components.audit.start()
        try:
            async with anyio.create_task_group() as tasks:
                await components.catalog.connect(tasks)
                await components.catalog.start(tasks, refresh_interval_s=0)
                tools = components.catalog.tools()
                status = components.catalog.upstream_status()
                await components.catalog.close()
                tasks.cancel_scope.cancel()
        finally:
            await components.audit.close()
        for name, state in status.items():
            if not state.connected:
                print(f"warning: upstream {name} is not reachable: {state.detail}", file=sys.stderr)
        return [
            {
                "name": t.name,
                "risk": t.risk,
                "definition_hash": t.definition_hash,
                "description": t.description,
                "annotations": t.annotations,
            }
            for t in sorted(tools, key=lambda t: t.name)
        ]

    rows = anyio.run(collect)
    components.database.dispose()
    if args.json:
        print(json.dumps({"tools": rows}, indent=2))
        return 0
    width = max((len(r["name"]) for r in rows), default=4)
    print(f"{'TOOL':<{width}}  {'RISK':<6}  DEFINITION HASH")
    for row in rows:
        print(f"{row['name']:<{width}}  {row['risk']:<6}  {row['definition_hash']}")
    return 0
