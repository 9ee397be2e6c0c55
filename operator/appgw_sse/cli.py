"""The `appgw-sse` command line."""

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from appgw_sse import logs, offline
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
            throttling=args.throttling,
        )
    )
    return EXIT_OK


def _env(flag: str) -> str:
    return "APPGW_SSE_" + flag.upper().replace("-", "_")


def _env_flag_adder(parser: argparse.ArgumentParser) -> Callable[..., None]:
    """Adds flags whose default is their env twin APPGW_SSE_<FLAG>; a switch is on when its
    twin is 1, true or yes."""

    def add(flag: str, default: str | None = None, *, switch: bool = False, **kwargs: Any) -> None:
        env = os.environ.get(_env(flag.lstrip("-")))
        if switch:
            on = (env or "").lower() in ("1", "true", "yes")
            parser.add_argument(flag, action="store_true", default=on, **kwargs)
        else:
            parser.add_argument(flag, default=env if env is not None else default, **kwargs)

    return add


def _duration_seconds(text: str) -> float:
    from appgw_sse.core.duration import parse_duration

    try:
        return float(parse_duration(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _run(args: argparse.Namespace) -> int:
    import asyncio
    import logging
    import os

    import appgw_sse.handlers.routes  # noqa: F401  (registers the handlers)
    from appgw_sse.adapters.azure_gateway import PUBLIC_ARM_ENDPOINT, ArmSettings
    from appgw_sse.leader import LeaseSettings, default_identity
    from appgw_sse.reconciler import OperatorConfig
    from appgw_sse.running import operate

    logs.setup(args.log_format, args.log_level)
    patterns = args.allowed_gateway or [
        p.strip() for p in os.environ.get("APPGW_SSE_ALLOWED_GATEWAYS", "").split(",") if p.strip()
    ]
    if not patterns:
        logging.getLogger(__name__).warning("no --allowed-gateway: no gateway will be written")
    config = OperatorConfig(
        allowed_gateways=tuple(patterns),
        namespace=os.environ.get("POD_NAMESPACE", "appgw-sse-system"),
        debounce=args.debounce,
        resync=args.resync,
        dry_run=args.dry_run,
        probe=not args.no_probe,
        probe_interval=args.probe_interval,
        arm=ArmSettings(
            endpoint=args.arm_endpoint or PUBLIC_ARM_ENDPOINT,
            ca_bundle=args.arm_ca_bundle,
            token_file=args.arm_token_file,
        ),
    )
    namespaces = args.namespace or [
        n for n in os.environ.get(_env("namespace"), "").split(",") if n
    ]
    lease = LeaseSettings(namespace=config.namespace, identity=default_identity())
    return asyncio.run(operate(config, namespaces, args.health_port, lease))


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

    run = commands.add_parser("run", help="run the operator (kubeconfig or in-cluster)")
    run.add_argument(
        "--namespace",
        action="append",
        default=[],
        help="watch this namespace (repeatable; default: all)",
    )
    run.add_argument(
        "--allowed-gateway",
        action="append",
        default=[],
        metavar="PATTERN",
        help="glob on gateway resource ids this operator may write (repeatable)",
    )
    flag = _env_flag_adder(run)
    flag("--resync", "5m", type=_duration_seconds, help="drift check period")
    flag("--debounce", "2s", type=_duration_seconds, help="coalescing window")
    flag("--dry-run", switch=True, help="plan and report in status, never write a gateway")
    flag(
        "--probe-interval",
        "1m",
        type=_duration_seconds,
        help="how often backend pods' response headers are probed",
    )
    flag("--no-probe", switch=True, help="never probe backend pods")
    flag("--arm-endpoint", help="ARM URL (sovereign clouds, emulators)")
    flag("--arm-ca-bundle", type=Path, help="PEM bundle to trust for ARM")
    flag(
        "--arm-token-file",
        type=Path,
        help="bearer token file instead of azure-identity (emulators)",
    )
    # Operability: where the operator tells what it does, and how it is probed and scraped.
    flag("--log-format", "text", choices=logs.FORMATS, help="stderr lines: text or json")
    flag("--log-level", "info", type=str.lower, choices=logs.LEVELS, help="least severe logged")
    flag("--health-port", "8080", type=int, help="port of /healthz and /metrics (0: any, logged)")
    run.set_defaults(handler=_run)

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
    emulator.add_argument(
        "--throttling",
        action="store_true",
        help="ARM's per-subscription token buckets: 429 with Retry-After when one is empty",
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
