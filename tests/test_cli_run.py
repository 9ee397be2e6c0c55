"""`appgw-sse run` flags and their env twins (parsing only; the e2e tests run the operator)."""

import pytest

from appgw_sse.cli import build_parser


def test_defaults() -> None:
    args = build_parser().parse_args(["run"])
    assert (args.resync, args.debounce, args.probe_interval) == (300.0, 2.0, 60.0)
    assert (args.dry_run, args.no_probe, args.arm_endpoint) == (False, False, None)


def test_env_twins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APPGW_SSE_RESYNC", "1m30s")
    monkeypatch.setenv("APPGW_SSE_DRY_RUN", "true")
    monkeypatch.setenv("APPGW_SSE_ARM_ENDPOINT", "https://management.usgovcloudapi.net")
    args = build_parser().parse_args(["run"])
    assert (args.resync, args.dry_run) == (90.0, True)
    assert args.arm_endpoint == "https://management.usgovcloudapi.net"
    assert build_parser().parse_args(["run", "--resync", "10s"]).resync == 10.0


def test_bad_duration_names_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--debounce", "2"])
    assert "--debounce" in capsys.readouterr().err


def test_operability_flags_and_env_twins(monkeypatch: pytest.MonkeyPatch) -> None:
    args = build_parser().parse_args(["run"])
    assert (args.log_format, args.log_level, args.health_port) == ("text", "info", 8080)
    monkeypatch.setenv("APPGW_SSE_LOG_FORMAT", "json")
    monkeypatch.setenv("APPGW_SSE_LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("APPGW_SSE_HEALTH_PORT", "9090")
    args = build_parser().parse_args(["run"])
    assert (args.log_format, args.log_level, args.health_port) == ("json", "debug", 9090)
    assert build_parser().parse_args(["run", "--log-level", "WARNING"]).log_level == "warning"
