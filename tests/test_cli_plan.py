"""`appgw-sse plan` as a user runs it: a real process, files on disk, exit codes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from appgw_sse import EXAMPLES

ROUTES = str(EXAMPLES / "routes.yaml")
GATEWAY = str(EXAMPLES / "gateway.json")


def appgw_sse(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "appgw_sse", *args], capture_output=True, text=True, timeout=60
    )


def example_gateway() -> dict:
    return dict(json.loads(Path(GATEWAY).read_text()))


def route_yaml(name: str, gateway_id: str, settings: str) -> str:
    return (
        f"apiVersion: sse.appgw.dev/v1alpha1\nkind: SseRoute\nmetadata: {{name: {name}, "
        f"namespace: shop}}\nspec: {{gateway: {{id: {gateway_id}, backendSettings: [{settings}]}}, "
        "idleInterval: 45s}\n"
    )


def test_examples_plan_shows_changes_and_exits_2() -> None:
    result = appgw_sse("plan", "-f", ROUTES, "--gateway", GATEWAY)
    assert result.returncode == 2, result.stderr
    out = result.stdout
    assert "~ globalConfiguration.enableResponseBuffering: enabled -> disabled" in out
    assert "~ backendHttpSettingsCollection[notifications-http].requestTimeout: 30s -> 120s" in out
    assert "Plan: 4 change(s) in 1 PUT(s)" in out
    assert "HTTP/2" in out and "internet-facing" in out


def test_json_output_then_replanning_with_its_ledger_on_the_applied_document_is_empty(
    tmp_path: Path,
) -> None:
    result = appgw_sse("plan", "-f", ROUTES, "--gateway", GATEWAY, "-o", "json")
    assert result.returncode == 2
    [plan] = json.loads(result.stdout)
    gateway = json.loads(Path(GATEWAY).read_text())
    gateway["properties"]["globalConfiguration"]["enableResponseBuffering"] = False
    for setting in gateway["properties"]["backendHttpSettingsCollection"]:
        for change in plan["changes"]:
            if change["setting"] == setting["name"]:
                setting["properties"]["requestTimeout"] = change["after"]
    (tmp_path / "gateway.json").write_text(json.dumps(gateway))
    (tmp_path / "ledger.json").write_text(json.dumps(plan["ledger"]))
    again = appgw_sse(
        "plan",
        "-f",
        ROUTES,
        "--gateway",
        str(tmp_path / "gateway.json"),
        "--ledger",
        str(tmp_path / "ledger.json"),
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert "Plan: no changes." in again.stdout


@pytest.mark.parametrize(
    ("routes_yaml", "expected"),
    [
        ("kind: [unclosed", "not valid YAML"),
        (
            "apiVersion: sse.appgw.dev/v1alpha1\nkind: SseRoute\nmetadata: {name: a, namespace: n}\n"
            "spec: {gateway: {id: x, backendSettings: [s]}, idleInterval: 45s, colour: red}\n",
            "SseRoute n/a: spec.colour: unknown field",
        ),
        (
            "apiVersion: sse.appgw.dev/v1alpha1\nkind: SseRoute\nmetadata: {name: a}\n"
            "spec: {gateway: {id: /subscriptions/s/resourceGroups/r/providers/Microsoft.Network/"
            "applicationGateways/g, backendSettings: [s]}, idleInterval: 45}\n",
            "SseRoute default/a: spec.idleInterval:",
        ),
        ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n", "kind: must be SseRoute"),
    ],
)
def test_bad_input_exits_1_naming_file_object_and_field(
    tmp_path: Path, routes_yaml: str, expected: str
) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text(routes_yaml)
    result = appgw_sse("plan", "-f", str(routes), "--gateway", GATEWAY)
    assert result.returncode == 1
    assert result.stdout == ""
    assert str(routes) in result.stderr and expected in result.stderr


def test_bad_gateway_file_exits_1(tmp_path: Path) -> None:
    gateway = tmp_path / "gateway.json"
    gateway.write_text('{"name": "agw"}')
    result = appgw_sse("plan", "-f", ROUTES, "--gateway", str(gateway))
    assert result.returncode == 1
    assert "gateway 1: id: required" in result.stderr


def test_crd_command_prints_the_committed_crd() -> None:
    result = appgw_sse("crd")
    committed = Path(__file__).resolve().parent.parent / "crds" / "sseroutes.sse.appgw.dev.yaml"
    assert result.stdout == committed.read_text()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["plan", "-f", ROUTES], "the following arguments are required: --gateway"),
        (["plan", "-f", ROUTES, "--gateway", GATEWAY, "-o", "yaml"], "invalid choice: 'yaml'"),
        (["plan", "-f", ROUTES, "--gateway", GATEWAY, "--colour"], "unrecognized arguments"),
        ([], "the following arguments are required: command"),
    ],
)
def test_usage_errors_exit_1_not_the_2_of_pending_changes(args: list[str], expected: str) -> None:
    result = appgw_sse(*args)
    assert result.returncode == 1, result.stderr
    assert expected in result.stderr and result.stdout == ""


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (
            {
                "id": "/subscriptions/00000000-0000-4000-8000-000000000001/resourceGroups/rg"
                "/providers/Microsoft.Compute/virtualMachines/vm1",
                "type": "Microsoft.Compute/virtualMachines",
                "properties": {"hardwareProfile": {"vmSize": "Standard_D2s_v5"}},
            },
            "type: 'Microsoft.Compute/virtualMachines' is not Microsoft.Network/applicationGateways",
        ),
        (
            {"id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/disks/d1"},
            "is not an Application Gateway resource id",
        ),
    ],
)
def test_a_document_that_is_not_a_gateway_is_bad_input(
    tmp_path: Path, document: dict, expected: str
) -> None:
    gateway = tmp_path / "vm.json"
    gateway.write_text(json.dumps(document))
    result = appgw_sse("plan", "-f", ROUTES, "--gateway", str(gateway))
    assert result.returncode == 1, result.stdout
    assert f"{gateway}: gateway 1: " in result.stderr and expected in result.stderr


def test_a_route_whose_gateway_is_not_in_the_input_fails_the_check(tmp_path: Path) -> None:
    other = example_gateway()
    other["id"] = other["id"].replace("agw-shop-prod", "agw-shop-staging")
    other["name"] = "agw-shop-staging"
    (tmp_path / "gateway.json").write_text(json.dumps(other))
    result = appgw_sse("plan", "-f", ROUTES, "--gateway", str(tmp_path / "gateway.json"))
    assert result.returncode == 1
    assert "error: 3 route(s) would not be configured" in result.stderr
    for key in ("shop/notifications", "shop/chat", "partners/partner-feed"):
        assert f"{key}: its gateway " in result.stderr
    assert "Plan: no changes." in result.stdout  # the review is still printed


def test_an_unknown_backend_setting_fails_the_check_even_with_other_changes(
    tmp_path: Path,
) -> None:
    gateway_id = example_gateway()["id"]
    routes = tmp_path / "routes.yaml"
    routes.write_text(
        route_yaml("good", gateway_id, "notifications-http")
        + "---\n"
        + route_yaml("typo", gateway_id, "notifications-htp")
    )
    result = appgw_sse("plan", "-f", str(routes), "--gateway", GATEWAY, "-o", "json")
    assert result.returncode == 1
    assert "shop/typo: BackendSettingsNotFound:" in result.stderr
    assert "notifications-htp" in result.stderr and "shop/good" not in result.stderr
    [plan] = json.loads(result.stdout)
    assert plan["changes"]  # what the valid route needs is still shown


def test_a_reader_that_goes_away_ends_the_plan_quietly() -> None:
    read, write = os.pipe()
    os.close(read)  # like `| head` having exited: every write now fails with EPIPE
    try:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "appgw_sse",
                "plan",
                "-f",
                ROUTES,
                "--gateway",
                GATEWAY,
                "-o",
                "json",
            ],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write)
    assert result.stderr == ""
    assert result.returncode == 141


def test_version() -> None:
    result = appgw_sse("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == "appgw-sse 0.1.0"


def test_plan_shows_each_routes_stream_check(tmp_path: Path) -> None:
    gateway_id = example_gateway()["id"]
    routes = tmp_path / "routes.yaml"
    checked = route_yaml("checked", gateway_id, "notifications-http").replace(
        "idleInterval: 45s}",
        "idleInterval: 45s, streamCheck: {url: 'https://shop.example.com/events/orders'}}",
    )
    routes.write_text(checked + "---\n" + route_yaml("plain", gateway_id, "notifications-http"))
    text = appgw_sse("plan", "-f", str(routes), "--gateway", GATEWAY)
    assert text.returncode == 2, text.stderr
    assert (
        "stream check: https://shop.example.com/events/orders every 5m, listening 1m30s "
        "(StreamVerified)" in text.stdout
    )
    assert text.stdout.count("stream check:") == 1
    [plan] = json.loads(
        appgw_sse("plan", "-f", str(routes), "--gateway", GATEWAY, "-o", "json").stdout
    )
    assert plan["outcomes"]["shop/checked"]["streamCheck"] == {
        "url": "https://shop.example.com/events/orders",
        "interval": "5m",
        "listen": "1m30s",
    }
    assert plan["outcomes"]["shop/plain"]["streamCheck"] is None


def test_a_draining_restore_reads_as_off_in_text_and_json(tmp_path: Path) -> None:
    """The ledger recorded draining off with 45 s stored; the operator set 120 s; no route
    needs it any more: text says the stored seconds come back, JSON says 0 (off) like status."""
    gateway = example_gateway()
    for setting in gateway["properties"]["backendHttpSettingsCollection"]:
        if setting["name"] == "notifications-http":
            setting["properties"]["connectionDraining"] = {
                "enabled": True,
                "drainTimeoutInSec": 120,
            }
    (tmp_path / "gateway.json").write_text(json.dumps(gateway))
    ledger = {
        "gatewayId": gateway["id"],
        "connectionDraining": {"notifications-http": {"original": -45, "applied": 120}},
    }
    (tmp_path / "ledger.json").write_text(json.dumps(ledger))
    args = ["plan", "-f", ROUTES, "--gateway", str(tmp_path / "gateway.json")]
    args += ["--ledger", str(tmp_path / "ledger.json")]
    text = appgw_sse(*args)
    assert text.returncode == 2, text.stderr
    assert (
        "~ backendHttpSettingsCollection[notifications-http].connectionDraining."
        "drainTimeoutInSec: 120s -> off (45s stored)  [restore]"
    ) in text.stdout
    assert "-45" not in text.stdout
    [plan] = json.loads(appgw_sse(*args, "-o", "json").stdout)
    [change] = [c for c in plan["changes"] if c["field"] == "connectionDraining"]
    assert (change["before"], change["after"], change["kind"]) == (120, 0, "restore")
    assert plan["outcomes"]["shop/notifications"]["connectionDraining"] == {"notifications-http": 0}
