"""The `appgw-sse` command line."""

import argparse
import importlib
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import yaml

from appgw_sse import __version__, logs, review
from appgw_sse.models.crd import build_crd

if TYPE_CHECKING:
    from appgw_sse.ports import ArmSettings

EXIT_OK, EXIT_ERROR, EXIT_CHANGES = 0, 1, 2
EXIT_BROKEN_PIPE = 128 + 13  # what a shell reports for a process that SIGPIPE ended


class _Parser(argparse.ArgumentParser):
    """Usage errors exit 1, not argparse's 2: for `plan`, 2 means "changes pending"."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message}\n")


def _plan(args: argparse.Namespace) -> int:
    try:
        routes = review.load_routes(args.file)
        gateways = review.load_gateways(args.gateway)
        plans = review.plan_all(
            routes, gateways, review.load_ledgers(args.ledger), owner=args.owner_id
        )
    except review.InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print(
        review.render_json(plans, routes)
        if args.output == "json"
        else review.render_text(plans, routes)
    )
    unconfigurable = review.unconfigurable_routes(plans, routes)
    if unconfigurable:
        print(
            f"error: {len(unconfigurable)} route(s) would not be configured:\n  "
            + "\n  ".join(unconfigurable),
            file=sys.stderr,
        )
        return EXIT_ERROR
    return EXIT_CHANGES if any(plan.changes for plan in plans) else EXIT_OK


def _sandbox_missing(command: str, *modules: str) -> bool:
    """The demo and the emulator run on packages the operator does not need, the `sandbox` extra:
    say so in one line when one of `modules` is not installed (the image leaves them out)."""
    missing = []
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        print(
            f"error: appgw-sse {command} needs {', '.join(missing)}: "
            "pip install 'appgw-sse-operator[sandbox]'",
            file=sys.stderr,
        )
    return bool(missing)


def _demo(args: argparse.Namespace) -> int:
    if _sandbox_missing("demo", "kmock", "trustme"):
        return EXIT_ERROR
    from appgw_sse.sandbox import demo

    return demo.run(args.plot)


def _emulator(args: argparse.Namespace) -> int:
    import asyncio

    if _sandbox_missing("emulator", "trustme"):
        return EXIT_ERROR
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


def _claims(args: argparse.Namespace) -> int:
    import asyncio
    import dataclasses

    from appgw_sse import claimtool

    settings = dataclasses.replace(_arm_settings(args), polling_interval=1.0)
    if args.action == "list":
        return asyncio.run(claimtool.list_claims(settings, args.gateway))
    return asyncio.run(claimtool.release(settings, args.gateway, args.owner, args.dry_run))


def _owner_id(text: str) -> str:
    from appgw_sse.core.claims import check_owner

    return check_owner(text)


def _env(flag: str) -> str:
    return "APPGW_SSE_" + flag.upper().replace("-", "_")


class _FromEnv(str):
    """A flag's value taken from its env twin, so that a bad one is reported by that name."""

    variable: str


def _converter(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse `type` whose errors name the env twin when the value came from it (argparse
    converts string defaults only when the flag itself is not given)."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as exc:
            source = f"{text.variable}={text!r}: " if isinstance(text, _FromEnv) else ""
            raise argparse.ArgumentTypeError(f"{source}{exc}") from None

    return convert


_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")  # RFC 1123 label
_TRUE = frozenset({"1", "true", "yes", "on", "y"})
_FALSE = frozenset({"0", "false", "no", "off", "n", ""})


def _boolean(text: str) -> bool:
    if text.strip().lower() in _TRUE | _FALSE:
        return text.strip().lower() in _TRUE
    raise ValueError(f"{text!r} is not a boolean: use true or false (1/0, yes/no, on/off)")


def _duration_seconds(text: str) -> float:
    from appgw_sse.core.duration import parse_duration

    return float(parse_duration(text))


class _Switch(argparse.Action):
    """A flag without a value (it turns the option on); its env twin may say true or false."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, type=_converter(_boolean), **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        setattr(namespace, self.dest, True)


def _among(parse: Callable[[str], Any], choices: Sequence[str]) -> Callable[[str], Any]:
    def checked(text: str) -> Any:
        value = parse(text)
        if value not in choices:
            raise ValueError(f"{value!r} is not one of {', '.join(choices)}")
        return value

    return checked


def _env_flag_adder(parser: argparse.ArgumentParser) -> Callable[..., None]:
    """Adds flags whose default is their env twin APPGW_SSE_<FLAG>; --help shows both."""

    def add(
        flag: str,
        default: str | None = None,
        *,
        switch: bool = False,
        parse: Callable[[str], Any] = str,
        shown: str | None = None,
        help: str,
        **kwargs: Any,
    ) -> None:
        variable = _env(flag.lstrip("-"))
        value = os.environ.get(variable)
        from_env = None
        if value is not None:
            from_env = _FromEnv(value)
            from_env.variable = variable
        help = f"{help} [env {variable}; default: {shown or default or 'off'}]"
        if switch:
            parser.add_argument(flag, action=_Switch, default=from_env or False, help=help)
        else:
            choices = kwargs.get("choices")
            if choices is not None:
                # argparse checks choices only for a value given on the command line, not for
                # the default that the env twin supplies.
                parse = _among(parse, choices)
            parser.add_argument(
                flag,
                default=from_env if from_env is not None else default,
                type=_converter(parse),
                help=help,
                **kwargs,
            )

    return add


def _run(args: argparse.Namespace) -> int:
    import asyncio
    import logging
    import os

    from appgw_sse.config import OperatorConfig
    from appgw_sse.core.policy import parse_rules
    from appgw_sse.handlers import routes as handlers  # registers the handlers
    from appgw_sse.leader import LeaseSettings, default_identity
    from appgw_sse.running import StartupError, operate

    logs.setup(args.log_format, args.log_level)
    patterns = args.allowed_gateway or [
        p.strip() for p in os.environ.get("APPGW_SSE_ALLOWED_GATEWAYS", "").split(",") if p.strip()
    ]
    if not patterns:
        logging.getLogger(__name__).warning("no --allowed-gateway: no gateway will be written")
    try:
        parse_rules(patterns)
    except ValueError as exc:
        raise SystemExit(f"appgw-sse run: error: argument --allowed-gateway: {exc}") from None
    namespaces = args.namespace or [
        n.strip() for n in os.environ.get(_env("namespace"), "").split(",") if n.strip()
    ]
    for namespace in namespaces:
        # Watched by name (one list and watch each), so not kopf's globs.
        if not _NAMESPACE.fullmatch(namespace):
            raise SystemExit(
                f"appgw-sse run: error: argument --namespace: {namespace!r} is not a namespace name"
            )
    problem = _kube_config_problem()
    if problem is not None:
        print(f"appgw-sse run: error: {problem}", file=sys.stderr)
        return EXIT_ERROR
    ledger_namespace = os.environ.get("POD_NAMESPACE", "appgw-sse-system")
    config = OperatorConfig(
        owner_id=args.owner_id or "",  # "": derived once the operator starts
        allowed_gateways=tuple(patterns),
        namespaces=tuple(namespaces),
        ledger_namespace=ledger_namespace,
        debounce=args.debounce,
        resync=args.resync,
        dry_run=args.dry_run,
        probe=not args.no_probe,
        agic=not args.no_agic,
        probe_interval=args.probe_interval,
        stream_check_interval=args.stream_check_interval,
        arm=_arm_settings(args),
    )
    if config.agic:
        handlers.watch_ingresses()
    lease = LeaseSettings(namespace=config.ledger_namespace, identity=default_identity())
    try:
        return asyncio.run(operate(config, args.health_port, lease))
    except StartupError as exc:
        print(f"appgw-sse run: error: {exc}", file=sys.stderr)
        return EXIT_ERROR


def _kube_config_problem() -> str | None:
    """Load the cluster's configuration (in-cluster, else the kubeconfig) as the operator will;
    what is wrong with it in one line naming KUBECONFIG, or None."""
    import kubernetes

    from appgw_sse.adapters.kube import load_config

    try:
        load_config()
    except (kubernetes.config.ConfigException, yaml.YAMLError, OSError, ValueError) as exc:
        variable = os.environ.get("KUBECONFIG")
        files = [Path(f).expanduser() for f in (variable or "~/.kube/config").split(os.pathsep)]
        if not any(f.is_file() for f in files):
            if variable:
                return f"KUBECONFIG={variable}: no such file (and this is not a pod)"
            return (
                "no kubeconfig: KUBECONFIG is not set, ~/.kube/config does not exist and this is "
                "not a pod with a service account: set KUBECONFIG"
            )
        source = f"KUBECONFIG={variable}" if variable else "~/.kube/config"
        detail = " ".join(str(exc).split())  # YAML errors span lines
        return f"{source}: not a usable kubeconfig: {detail}"
    return None


def _doctor(args: argparse.Namespace) -> int:
    from appgw_sse import doctor

    return doctor.main(args.url, args.duration, args.header, args.direct, args.output)


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not a header such as 'Authorization: x'")
    return name.strip(), value.strip()


def _crd(args: argparse.Namespace) -> int:
    print(yaml.safe_dump(build_crd(), sort_keys=False, width=100), end="")
    return EXIT_OK


def _add_arm_flags(flag: Callable[..., None]) -> None:
    """How `run` and `claims` reach ARM (each flag with its APPGW_SSE_* env twin)."""
    flag(
        "--arm-endpoint",
        metavar="URL",
        shown="the public cloud",
        help="ARM URL (sovereign clouds, emulators)",
    )
    flag(
        "--arm-ca-bundle",
        parse=Path,
        metavar="PEM",
        shown="the system's CAs",
        help="PEM bundle to trust for ARM",
    )
    flag(
        "--arm-token-file",
        parse=Path,
        metavar="PATH",
        shown="azure-identity",
        help="bearer token file instead of azure-identity (emulators), re-read when it changes",
    )


def _arm_settings(args: argparse.Namespace) -> "ArmSettings":
    from appgw_sse.ports import PUBLIC_ARM_ENDPOINT, ArmSettings

    return ArmSettings(
        endpoint=args.arm_endpoint or PUBLIC_ARM_ENDPOINT,
        ca_bundle=args.arm_ca_bundle,
        token_file=args.arm_token_file,
    )


def build_parser() -> argparse.ArgumentParser:
    """The `appgw-sse` command line; `build_parser().parse_args(["run", ...])` gives the
    operator's settings as the Helm chart's arguments set them."""
    parser = _Parser(prog="appgw-sse", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    plan = commands.add_parser(
        "plan",
        help="show what the operator would change on a gateway (offline)",
        description="Exit status: 0 nothing would change, 2 something would, 1 bad input or a "
        "route that would not be configured (its gateway is not in --gateway, a backend "
        "setting does not exist, an unsupported SKU, a gateway AGIC manages).",
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
    plan.add_argument(
        "--owner-id",
        type=_converter(_owner_id),
        default="default",
        metavar="ID",
        help="plan as the operator with this owner id (its claim tags on the gateway); others' "
        "claims are read from the gateway's tags",
    )
    plan.add_argument("-o", "--output", choices=("text", "json"), default="text")
    plan.set_defaults(handler=_plan)

    demo = commands.add_parser(
        "demo",
        help="watch an SSE stream go live through the emulated gateway (no cluster, no Azure)",
        description="Start the emulator, a Kubernetes API, the operator and a sample SSE "
        "backend; run the doctor through the gateway before and after applying an SseRoute. "
        "Exit 0 when the stream went from broken to live.",
    )
    plot = "also draw the two runs (needs the 'plot' extra: matplotlib)"
    demo.add_argument("--plot", type=Path, metavar="FILE.png", help=plot)
    demo.set_defaults(handler=_demo)

    run = commands.add_parser(
        "run",
        help="run the operator (kubeconfig or in-cluster)",
        description="Run the operator. Every flag has an env twin; the flag wins.",
    )
    run.add_argument(
        "--namespace",
        action="append",
        default=[],
        metavar="NS",
        help="watch this namespace (repeatable) [env APPGW_SSE_NAMESPACE, separated by commas; "
        "default: all namespaces]",
    )
    run.add_argument(
        "--allowed-gateway",
        action="append",
        default=[],
        metavar="[NAMESPACE=]PATTERN",
        help="glob on gateway resource ids this operator may write (repeatable); with "
        "NAMESPACE= (a glob too), only for the routes of matching namespaces "
        "[env APPGW_SSE_ALLOWED_GATEWAYS, separated by commas; default: none, nothing is written]",
    )
    flag = _env_flag_adder(run)
    duration = {"parse": _duration_seconds, "metavar": "DURATION"}
    flag("--resync", "5m", **duration, help="drift check period")
    flag("--debounce", "2s", **duration, help="coalescing window")
    flag("--dry-run", switch=True, help="plan and report in status, never write a gateway")
    flag(
        "--probe-interval",
        "1m",
        **duration,
        help="how often backend pods' response headers are probed",
    )
    flag("--no-probe", switch=True, help="never probe backend pods")
    flag(
        "--owner-id",
        parse=_owner_id,
        metavar="ID",
        shown="<namespace>-<8 hex of kube-system's uid>",
        help="this installation's name in the claim tags it writes on gateways, unique among "
        "the clusters that share one (docs/two-clusters.md); a-z, 0-9 and '-', at most 63",
    )
    flag(
        "--stream-check-interval",
        **duration,
        shown="each route's spec.streamCheck.interval",
        help="for tests and emulators only: run every route's stream check this often, below "
        "the 1m floor the CRD enforces",
    )
    flag(
        "--no-agic",
        switch=True,
        help="AGIC mode off: never read or patch Ingresses (routes on AGIC gateways are told)",
    )
    _add_arm_flags(flag)
    # Operability: where the operator tells what it does, and how it is probed and scraped.
    flag("--log-format", "text", choices=logs.FORMATS, help="stderr lines: text or json")
    flag("--log-level", "info", parse=str.lower, choices=logs.LEVELS, help="least severe logged")
    flag("--health-port", "8080", parse=int, help="port of /healthz and /metrics (0: any, logged)")
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

    doctor = commands.add_parser(
        "doctor",
        help="listen to an SSE stream and say whether the path streams, buffers or cuts it",
        description="Exit status: 0 healthy, 1 problems found, 2 could not connect.",
    )
    doctor.add_argument("url", help="the stream, as a browser would open it")
    doctor.add_argument(
        "--duration", default="60s", type=_duration_seconds, help="how long to listen (60s)"
    )
    doctor.add_argument(
        "--header", action="append", default=[], type=_header, metavar="K:V", help="repeatable"
    )
    doctor.add_argument("--direct", metavar="URL", help="the backend itself, to compare with")
    doctor.add_argument("-o", "--output", choices=("text", "json"), default="text")
    doctor.set_defaults(handler=_doctor)

    claims = commands.add_parser(
        "claims",
        help="the claims of each cluster's operator on a gateway (its appgw-sse tags)",
        description="Exit status: 0 done, 1 error, 2 (release --dry-run) something would change.",
    )
    actions = claims.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="show every owner's claim and the originals")
    releasing = actions.add_parser(
        "release",
        help="remove the claim of a cluster that no longer exists, in one PUT",
        description="Remove OWNER's claim and set each value it claimed to what the remaining "
        "claims need, or back to its original when none remains. A live operator of that "
        "owner writes its claim again at its next pass: use it for clusters that are gone.",
    )
    releasing.add_argument(
        "--owner", required=True, type=_converter(_owner_id), help="the claim's owner id"
    )
    releasing.add_argument("--dry-run", action="store_true", help="print the change, write none")
    for action in (listing, releasing):
        action.add_argument("--gateway", required=True, metavar="ID", help="gateway resource id")
        _add_arm_flags(_env_flag_adder(action))
    claims.set_defaults(handler=_claims)

    crd = commands.add_parser("crd", help="print the SseRoute CustomResourceDefinition")
    crd.set_defaults(handler=_crd)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = int(args.handler(args))
        sys.stdout.flush()  # a reader that went away shows here, not at interpreter exit
    except BrokenPipeError:
        # `plan -o json | head`: stop quietly. Python would report the error again when it
        # flushes stdout at exit, so stdout now goes nowhere (Python's documented recipe).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    return code


if __name__ == "__main__":
    sys.exit(main())
