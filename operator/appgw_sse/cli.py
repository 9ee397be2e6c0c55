"""The `appgw-sse` command line."""

import argparse
import os
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


def _env(flag: str) -> str:
    return "APPGW_SSE_" + flag.upper().replace("-", "_")


def _duration_seconds(text: str) -> float:
    from appgw_sse.core.duration import parse_duration

    try:
        return float(parse_duration(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _run(args: argparse.Namespace) -> int:
    import asyncio
    import os

    import kopf

    import appgw_sse.handlers.routes  # noqa: F401  (registers the handlers)
    from appgw_sse.adapters.azure_gateway import PUBLIC_ARM_ENDPOINT, ArmSettings
    from appgw_sse.reconciler import OperatorConfig

    patterns = args.allowed_gateway or [
        p.strip() for p in os.environ.get("APPGW_SSE_ALLOWED_GATEWAYS", "").split(",") if p.strip()
    ]
    if not patterns:
        print("warning: no --allowed-gateway: no gateway will be written", file=sys.stderr)
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
    asyncio.run(
        kopf.operator(
            clusterwide=not namespaces,
            namespaces=namespaces,
            standalone=True,
            memo=kopf.Memo(config=config),
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
    run.add_argument(
        "--resync",
        type=_duration_seconds,
        default=os.environ.get(_env("resync"), "5m"),
        help="drift check period",
    )
    run.add_argument(
        "--debounce",
        type=_duration_seconds,
        default=os.environ.get(_env("debounce"), "2s"),
        help="coalescing window",
    )
    run.add_argument(
        "--dry-run",
        action="store_true",
        default=os.environ.get(_env("dry-run"), "").lower() in ("1", "true", "yes"),
        help="plan and report in status, never write a gateway",
    )
    run.add_argument(
        "--probe-interval",
        type=_duration_seconds,
        default=os.environ.get(_env("probe-interval"), "1m"),
        help="how often backend pods' response headers are probed",
    )
    run.add_argument(
        "--no-probe",
        action="store_true",
        default=os.environ.get(_env("no-probe"), "").lower() in ("1", "true", "yes"),
        help="never probe backend pods",
    )
    run.add_argument(
        "--arm-endpoint",
        default=os.environ.get(_env("arm-endpoint")),
        help="ARM URL (sovereign clouds, emulators)",
    )
    run.add_argument(
        "--arm-ca-bundle",
        type=Path,
        default=os.environ.get(_env("arm-ca-bundle")),
        help="PEM bundle to trust for ARM",
    )
    run.add_argument(
        "--arm-token-file",
        type=Path,
        default=os.environ.get(_env("arm-token-file")),
        help="bearer token file instead of azure-identity (emulators)",
    )
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
    emulator.set_defaults(handler=_emulator)

    crd = commands.add_parser("crd", help="print the SseRoute CustomResourceDefinition")
    crd.set_defaults(handler=_crd)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
