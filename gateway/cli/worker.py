"""`gateway worker`: executor workers without the HTTP surfaces.

Runs the same worker loops `gateway serve` runs (``executor.workers`` of them, or
``--workers``) against the configured database, with the gateway's own pipeline,
catalog and audit log. Any number of worker processes may share one database.
"""

from __future__ import annotations

import argparse
import logging
import signal

from gateway.cli.common import add_config_option, config_from


def register(commands: argparse._SubParsersAction) -> None:
    worker = commands.add_parser("worker", help="run executor workers (no HTTP)")
    add_config_option(worker)
    worker.add_argument(
        "--workers",
        type=int,
        default=None,
        help="worker loops in this process (default: the config's executor.workers)",
    )
    worker.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="least severe log level shown (default: info)",
    )
    worker.set_defaults(handler=cmd_worker)


def cmd_worker(args: argparse.Namespace) -> int:
    import anyio

    from gateway import telemetry
    from gateway.app import running
    from gateway.components import Components, build_components, build_executor
    from gateway.logs import configure_logging

    configure_logging(args.log_level, json_format=True)
    config = config_from(args)
    count = args.workers if args.workers is not None else max(1, config.executor.workers)

    async def main(components: Components) -> None:
        async with running(components):
            executor = build_executor(components)
            async with executor.running(count):
                # Said once the loops run: what an orchestrator or a test waits for.
                logging.getLogger("gateway.worker").info("worker ready: %d loops", count)
                # SIGTERM and SIGINT stop the loops; a run cut off mid-step is taken
                # over by another worker after its lease, with the same keys.
                with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                    async for _ in signals:
                        break

    # On before the components are built: tracing decides which of them are built.
    with telemetry.tracing(config.tracing):
        anyio.run(main, build_components(config))
    return 0
