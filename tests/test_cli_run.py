"""`appgw-sse run` flags and their env twins (parsing only; the e2e tests run the operator)."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from appgw_sse.cli import build_parser
from tests.support.cluster import require_real, running

DURATION_FLAGS = ("--resync", "--debounce", "--probe-interval", "--stream-check-interval")


def test_defaults() -> None:
    args = build_parser().parse_args(["run"])
    assert (args.resync, args.debounce, args.probe_interval) == (300.0, 2.0, 60.0)
    assert (args.dry_run, args.no_probe, args.arm_endpoint) == (False, False, None)
    assert args.stream_check_interval is None  # each route's own spec.streamCheck.interval


def test_env_twins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APPGW_SSE_RESYNC", "1m30s")
    monkeypatch.setenv("APPGW_SSE_DRY_RUN", "true")
    monkeypatch.setenv("APPGW_SSE_ARM_ENDPOINT", "https://management.usgovcloudapi.net")
    args = build_parser().parse_args(["run"])
    assert (args.resync, args.dry_run) == (90.0, True)
    assert args.arm_endpoint == "https://management.usgovcloudapi.net"
    assert build_parser().parse_args(["run", "--resync", "10s"]).resync == 10.0


def test_bad_duration_names_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        build_parser().parse_args(["run", "--debounce", "2"])
    assert caught.value.code == 1
    assert "argument --debounce: '2' is not a duration" in capsys.readouterr().err


@pytest.mark.parametrize("flag", DURATION_FLAGS)
def test_bad_duration_in_an_env_twin_names_the_flag_and_the_variable(
    flag: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    variable = "APPGW_SSE_" + flag.lstrip("-").upper().replace("-", "_")
    monkeypatch.setenv(variable, "5x")
    with pytest.raises(SystemExit) as caught:
        build_parser().parse_args(["run"])
    assert caught.value.code == 1
    assert f"argument {flag}: {variable}='5x': '5x' is not a duration" in capsys.readouterr().err
    # The flag wins over its twin, so a bad twin does not matter then.
    assert getattr(build_parser().parse_args(["run", flag, "7s"]), flag[2:].replace("-", "_")) == 7


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["run", "--resync", "5x"], "appgw-sse run: error: argument --resync: '5x'"),
        (["run", "--no-such-flag"], "appgw-sse: error: unrecognized arguments: --no-such-flag"),
        (["run", "--namespace", "shop-*"], "argument --namespace: 'shop-*' is not a namespace"),
        (["run", "--owner-id", "Blue"], "argument --owner-id: 'Blue' is not an owner id"),
        (["claims", "release", "--gateway", "x", "--owner", "a.b"], "'a.b' is not an owner id"),
    ],
)
def test_usage_errors_of_the_real_command_exit_1_without_a_traceback(
    args: list[str], expected: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "appgw_sse", *args], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and expected in result.stderr


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        *[(value, True) for value in ("on", "TRUE", "1", "yes", "y")],
        *[(value, False) for value in ("off", "False", "0", "no", "")],
    ],
)
@pytest.mark.parametrize("switch", ["dry_run", "no_probe"])
def test_switch_twins_accept_the_usual_spellings(
    switch: str, value: str, expected: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(f"APPGW_SSE_{switch.upper()}", value)
    assert getattr(build_parser().parse_args(["run"]), switch) is expected


def test_a_switch_twin_that_is_not_a_boolean_is_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("APPGW_SSE_DRY_RUN", "enabled")
    with pytest.raises(SystemExit) as caught:
        build_parser().parse_args(["run"])
    assert caught.value.code == 1
    err = capsys.readouterr().err
    assert "argument --dry-run: APPGW_SSE_DRY_RUN='enabled': 'enabled' is not a boolean" in err


def test_help_shows_each_flags_env_twin_and_default(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # undo argparse's line wrapping
    for flag, default in [
        ("resync", "5m"),
        ("debounce", "2s"),
        ("probe-interval", "1m"),
        ("dry-run", "off"),
        ("no-probe", "off"),
        ("stream-check-interval", "each route's spec.streamCheck.interval"),
        ("no-agic", "off"),
        ("arm-endpoint", "the public cloud"),
        ("arm-ca-bundle", "the system's CAs"),
        ("arm-token-file", "azure-identity"),
    ]:
        variable = "APPGW_SSE_" + flag.upper().replace("-", "_")
        assert f"[env {variable}; default: {default}]" in text, flag
    assert "[env APPGW_SSE_NAMESPACE, separated by commas; default: all namespaces]" in text
    assert "[env APPGW_SSE_ALLOWED_GATEWAYS, separated by commas; default: none" in text


def test_operability_flags_and_env_twins(monkeypatch: pytest.MonkeyPatch) -> None:
    args = build_parser().parse_args(["run"])
    assert (args.log_format, args.log_level, args.health_port) == ("text", "info", 8080)
    monkeypatch.setenv("APPGW_SSE_LOG_FORMAT", "json")
    monkeypatch.setenv("APPGW_SSE_LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("APPGW_SSE_HEALTH_PORT", "9090")
    args = build_parser().parse_args(["run"])
    assert (args.log_format, args.log_level, args.health_port) == ("json", "debug", 9090)
    assert build_parser().parse_args(["run", "--log-level", "WARNING"]).log_level == "warning"


# -- what keeps the operator from starting: one line, exit 1, no traceback ---------------------


def run_operator(
    tmp_path: Path, *args: str, timeout: float = 60, **env: str
) -> subprocess.CompletedProcess[str]:
    """`appgw-sse run` as a user starts it outside a cluster (no in-cluster service account)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("KUBERNETES_", "POD_"))}
    environ |= {"HOME": str(tmp_path), **env}
    return subprocess.run(
        [sys.executable, "-m", "appgw_sse", "run", "--no-probe", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environ,
    )


def refused(result: subprocess.CompletedProcess[str]) -> str:
    """The error line of a run that could not start."""
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("appgw-sse run: error: "), result.stderr
    return last.removeprefix("appgw-sse run: error: ")


def unreachable_kubeconfig(tmp_path: Path) -> Path:
    """A valid kubeconfig whose API server is never reached in these tests."""
    path = tmp_path / "kubeconfig"
    cluster = {"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}
    context = {"name": "c", "context": {"cluster": "c", "user": "u"}}
    config = {"apiVersion": "v1", "kind": "Config", "current-context": "c", "clusters": [cluster]}
    config |= {"users": [{"name": "u", "user": {"token": "t"}}], "contexts": [context]}
    path.write_text(json.dumps(config))
    return path


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "KUBECONFIG={path}: no such file"),
        ("", "KUBECONFIG={path}: not a usable kubeconfig: Invalid kube-config. "),
        ("a: [b\n", "KUBECONFIG={path}: not a usable kubeconfig: while parsing a flow sequence"),
        ("apiVersion: v1\nkind: Config\n", "KUBECONFIG={path}: not a usable kubeconfig: Invalid"),
    ],
    ids=["missing", "empty", "not YAML", "no context"],
)
def test_a_missing_or_invalid_kubeconfig_is_named(
    tmp_path: Path, content: str | None, expected: str
) -> None:
    path = tmp_path / "config"
    if content is not None:
        path.write_text(content)
    line = refused(run_operator(tmp_path, KUBECONFIG=str(path)))
    assert line.startswith(expected.format(path=path)), line


def test_no_kubeconfig_at_all_says_what_to_set(tmp_path: Path) -> None:
    environ_without = run_operator(tmp_path)  # HOME has no .kube/config; KUBECONFIG unset
    assert refused(environ_without).startswith(
        "no kubeconfig: KUBECONFIG is not set, ~/.kube/config does not exist"
    )


def test_a_busy_health_port_is_named(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("0.0.0.0", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = run_operator(
            tmp_path,
            "--health-port",
            str(port),
            KUBECONFIG=str(unreachable_kubeconfig(tmp_path)),
        )
    assert refused(result).startswith(f"--health-port {port}: Address already in use")


def test_a_missing_operator_namespace_names_pod_namespace(tmp_path: Path) -> None:
    # The stand-in creates objects in any namespace.
    require_real("refusing to start without the operator's namespace")
    with running(tmp_path) as cluster:
        result = run_operator(
            tmp_path,
            "--health-port",
            "0",
            KUBECONFIG=str(cluster.kubeconfig),
            POD_NAMESPACE="no-such-namespace",
        )
    assert refused(result) == (
        "POD_NAMESPACE=no-such-namespace: the operator's namespace no-such-namespace does not "
        "exist (its Lease and ledgers live there): create it (kubectl create namespace "
        "no-such-namespace) or set POD_NAMESPACE to the namespace the operator runs in"
    )


def test_a_twin_outside_its_flags_choices_is_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("APPGW_SSE_LOG_LEVEL", "chatty")
    with pytest.raises(SystemExit) as caught:
        build_parser().parse_args(["run"])
    assert caught.value.code == 1
    assert (
        "argument --log-level: APPGW_SSE_LOG_LEVEL='chatty': 'chatty' is not one of debug, info"
        in capsys.readouterr().err
    )
