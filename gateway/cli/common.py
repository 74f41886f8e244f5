"""What every command shares: the config option and how a command finds its config.

Standard library only at import time (so is every command module): `gateway --help`
must not pay for pydantic, SQLAlchemy or the audit layer; each handler imports what it
uses when it runs.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.config import Config


def add_config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        default=os.environ.get("GATEWAY_CONFIG"),
        help="config file (default: $GATEWAY_CONFIG, else the dev setup in var/dev)",
    )


def config_from(args: argparse.Namespace) -> Config:
    """The --config file, or the dev-mode setup when none is given."""
    from gateway.config import load_config
    from gateway.dev import dev_setup

    if args.config:
        return load_config(args.config)
    return dev_setup().config
