"""`gateway policy push`: upload a policy folder to a development OPA server.

Production OPA servers load (signed) bundles instead; see docs/policies.md.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

DEFAULT_OPA_URL = "http://127.0.0.1:8181"  # where `opa run --server` listens by default
DEFAULT_POLICY = Path("policies")


def register(sub: argparse._SubParsersAction) -> None:
    push = sub.add_parser(
        "push",
        help="upload .rego modules and data.json files to a development OPA server",
        description=(
            "Uploads the .rego modules (not *_test.rego), joined into one module per "
            "package, with PUT /v1/policies/push/<package>, and every data.json, mounted at "
            "its folder's path, with PUT /v1/data/<key>. For development servers only: "
            "production OPA loads bundles (docs/policies.md)."
        ),
    )
    push.add_argument(
        "--config",
        type=Path,
        default=os.environ.get("GATEWAY_CONFIG"),
        help="config whose policy.url and policy.path to use (default: $GATEWAY_CONFIG)",
    )
    push.add_argument("--url", help=f"OPA server (default: the config's, else {DEFAULT_OPA_URL})")
    push.add_argument(
        "--policy",
        type=Path,
        help="policy folder (default: the config's policy.path, else ./policies)",
    )
    push.set_defaults(handler=cmd_policy_push)


def cmd_policy_push(args: argparse.Namespace) -> int:
    from gateway.config import OpaPolicyConfig, load_config
    from gateway.policy.opa_admin import push_policy_folder

    url, folder = args.url, args.policy
    if args.config:
        # Only a file given on purpose: the dev setup (no --config) has no OPA in it.
        policy = load_config(args.config).policy
        if isinstance(policy, OpaPolicyConfig):
            url = url or policy.url
        folder = folder or policy.path
    report = push_policy_folder(url or DEFAULT_OPA_URL, folder or DEFAULT_POLICY)
    print(f"pushed {folder or DEFAULT_POLICY} to {report.url}")
    for module in report.modules:
        print(f"  package {module.package} as policy {module.id}:")
        for file in module.files:
            print(f"    {file}")
    for key in report.data_keys:
        print(f"  data    data.{key}")
    if report.data_files:
        print(f"  (data from {', '.join(report.data_files)})")
    return 0
