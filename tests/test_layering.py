"""Below the shell nothing loads an adapter's SDK: the domain, the settings and the workers
import in a fresh interpreter without azure or kubernetes (and the domain without kopf), so they
stay cheap to load and testable without a cloud or a cluster."""

import json
import pkgutil
import subprocess
import sys

import pytest

import appgw_sse.core

CORE = [f"appgw_sse.core.{m.name}" for m in pkgutil.iter_modules(appgw_sse.core.__path__)]


def loaded_sdks(modules: list[str]) -> list[str]:
    """The top-level names of the SDK packages loaded by importing `modules` afresh."""
    script = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "prefixes = ('azure', 'kubernetes', 'kopf')\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules"
        " if m.startswith(prefixes)})))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    loaded: list[str] = json.loads(run.stdout)
    return loaded


def test_the_core_modules_are_all_checked() -> None:
    assert {"appgw_sse.core.planner", "appgw_sse.core.fields", "appgw_sse.core.intent"} <= set(CORE)


@pytest.mark.parametrize(
    ("modules", "forbidden"),
    [
        ([*CORE, "appgw_sse.models"], ("azure", "kubernetes", "kopf")),
        (
            [
                "appgw_sse.config",
                "appgw_sse.ports",
                "appgw_sse.routebook",
                "appgw_sse.reconciler",
                "appgw_sse.agic_mode",
                "appgw_sse.pods",
            ],
            ("azure", "kubernetes"),
        ),
    ],
    ids=["core and models", "settings and workers"],
)
def test_importing_below_the_shell_loads_no_sdk(
    modules: list[str], forbidden: tuple[str, ...]
) -> None:
    assert [name for name in loaded_sdks(modules) if name.startswith(forbidden)] == []


def test_the_check_sees_an_sdk_when_one_is_loaded() -> None:
    assert "azure" in loaded_sdks(["appgw_sse.adapters.azure_gateway"])
