"""The `appgw-sse` command line."""

import argparse
import sys
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import yaml

from appgw_sse import offline
from appgw_sse.models.crd import build_crd

EXIT_OK, EXIT_ERROR, EXIT_CHANGES = 0, 1, 2


def _plan(args: argparse.Namespace) -> int:
    try:
        routes = offline.load_routes(args.file)
        gateways = offline.load_gateways(args.gateway)
        plans = offline.plan_all(routes, gateways, offline.load_ledgers(args.ledger))
    except offline.InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print(
        offline.render_json(plans) if args.output == "json" else offline.render_text(plans, routes)
    )
    return EXIT_CHANGES if any(plan.changes for plan in plans) else EXIT_OK


def _demo(args: argparse.Namespace) -> int:
    with (
        resources.as_file(offline.EXAMPLES / "routes.yaml") as routes,
        resources.as_file(offline.EXAMPLES / "gateway.json") as gateway,
    ):
        print(f"# appgw-sse plan -f {routes} --gateway {gateway}\n")
        _plan(argparse.Namespace(file=routes, gateway=gateway, ledger=None, output="text"))
    return EXIT_OK


def _emulator(args: argparse.Namespace) -> int:
    import asyncio

    from appgw_sse.emulator.server import load_seeds, run_until_signalled

    try:
        seeds = load_seeds(args.seed)
    except (OSError, ValueError) as exc:
        print(f"error: --seed: {exc}", file=sys.stderr)
        return EXIT_ERROR
    asyncio.run(
        run_until_signalled(
            host=args.host,
            port=args.port,
            tls_dir=args.tls_dir,
            lro_seconds=args.lro_seconds,
            seeds=seeds,
        )
    )
    return EXIT_OK


def _crd(args: argparse.Namespace) -> int:
    print(yaml.safe_dump(build_crd(), sort_keys=False, width=100), end="")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="appgw-sse", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    plan = commands.add_parser(
        "plan",
        help="show what the operator would change on a gateway (offline)",
        description="Exit status: 0 nothing would change, 2 something would, 1 bad input.",
    )
    plan.add_argument("-f", "--file", type=Path, required=True, help="YAML file of SseRoutes")
    plan.add_argument(
        "--gateway",
        type=Path,
        required=True,
        help="gateway JSON as `az network application-gateway show` prints it (or a list)",
    )
    plan.add_argument(
        "--ledger", type=Path, help="ownership ledger JSON (what the operator changed)"
    )
    plan.add_argument("-o", "--output", choices=("text", "json"), default="text")
    plan.set_defaults(handler=_plan)

    demo = commands.add_parser(
        "demo", help="plan the shipped example routes against the example gateway"
    )
    demo.set_defaults(handler=_demo)

    emulator = commands.add_parser(
        "emulator", help="serve a local HTTPS emulator of ARM's Application Gateway API"
    )
    emulator.add_argument("--host", default="127.0.0.1")
    emulator.add_argument("--port", type=int, default=0, help="0 picks a free port")
    emulator.add_argument(
        "--seed",
        type=Path,
        action="append",
        default=[],
        help="gateway JSON (one document or a list); repeatable",
    )
    emulator.add_argument(
        "--tls-dir", type=Path, help="keep the CA, certificate and token here (reused across runs)"
    )
    emulator.add_argument(
        "--lro-seconds", type=float, default=1.0, help="how long a PUT stays Updating"
    )
    emulator.set_defaults(handler=_emulator)

    crd = commands.add_parser("crd", help="print the SseRoute CustomResourceDefinition")
    crd.set_defaults(handler=_crd)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
