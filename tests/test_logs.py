"""The operator's log lines: stable JSON keys, context, kopf's chatter, no secrets."""

import io
import json
import logging
from collections.abc import Iterator

import pytest

from appgw_sse import logs

GATEWAY = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/applicationGateways/agw"
TOKEN = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJodHRwcyJ9.c2lnbmF0dXJl"


@pytest.fixture
def output() -> Iterator[io.StringIO]:
    """Restores the process's logging afterwards."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    libraries = {name: logging.getLogger(name).level for name in ("urllib3", "azure", "kubernetes")}
    stream = io.StringIO()
    yield stream
    root.handlers[:], root.level = saved
    for name, level in libraries.items():
        logging.getLogger(name).setLevel(level)
    logging.captureWarnings(False)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_have_the_stable_keys_and_the_gateway_context(output: io.StringIO) -> None:
    logs.setup("json", "info", stream=output)
    log = logging.getLogger("appgw_sse.reconciler")
    log.info("before any gateway")
    with logs.context(gateway=GATEWAY, routes=["shop/a", "shop/b"]):
        log.info("gateway %s: PUT %s applied", "agw", "x 1 -> 2")
        logging.getLogger("azure.core.whatever").warning("a library line inside the pass")
    log.warning("route event", extra={"route": "shop/a"})
    first, put, library, route = lines(output)
    assert list(first) == ["time", "level", "logger", "message"]
    assert first["level"] == "info" and str(first["time"]).endswith("Z")
    assert put["message"] == "gateway agw: PUT x 1 -> 2 applied"
    assert put["gateway"] == GATEWAY and put["routes"] == ["shop/a", "shop/b"]
    assert library["gateway"] == GATEWAY and library["level"] == "warning"
    assert route["route"] == "shop/a" and "gateway" not in route
    for line in (first, put, library, route):
        assert set(line) <= set(logs.JSON_KEYS)


def test_kopf_object_lines_name_the_route_or_object(output: io.StringIO) -> None:
    logs.setup("json", "info", stream=output)
    kopf = logging.getLogger("kopf.objects")
    ref = {
        "apiVersion": "sse.appgw.dev/v1alpha1",
        "kind": "SseRoute",
        "namespace": "shop",
        "name": "a",
        "uid": "u",
    }
    kopf.warning("Handler 'route_deleted' failed temporarily", extra={"k8s_ref": ref})
    kopf.warning("odd pod", extra={"k8s_ref": {"kind": "Pod", "namespace": "shop", "name": "p"}})
    route, pod = lines(output)
    assert route["route"] == "shop/a" and pod["object"] == "Pod shop/p"


def test_kopf_per_handler_chatter_is_debug(output: io.StringIO) -> None:
    logs.setup("json", "info", stream=output)
    kopf = logging.getLogger("kopf.objects")
    kopf.info("Handler 'pod_event' succeeded.")
    kopf.info("Activity 'start' succeeded.")
    kopf.info("Signal SIGTERM is received. Operator is stopping.")
    assert [line["message"] for line in lines(output)] == [
        "Signal SIGTERM is received. Operator is stopping."
    ]
    output.truncate(0)
    output.seek(0)
    logs.setup("json", "debug", stream=output)
    kopf.info("Handler 'pod_event' succeeded.")
    assert lines(output)[0]["level"] == "debug"


def test_no_secret_and_no_stray_attribute_is_written(output: io.StringIO) -> None:
    logs.setup("json", "debug", stream=output)
    log = logging.getLogger("appgw_sse.test")
    log.debug("request headers {'Authorization': '%s'}", f"Bearer {TOKEN}")
    log.debug("authorization=%s", TOKEN)
    log.info("settings", extra={"password": "hunter2", "settings": {"token": TOKEN}})
    try:
        raise RuntimeError(f"401 with Bearer {TOKEN}")
    except RuntimeError:
        log.exception("failed")
    text = output.getvalue()
    assert TOKEN not in text and "hunter2" not in text
    assert "<redacted>" in lines(output)[0]["message"]
    assert "RuntimeError" in str(lines(output)[-1]["exception"])


def test_text_lines_and_library_noise(output: io.StringIO) -> None:
    logs.setup("text", "info", stream=output)
    logs.setup("text", "info", stream=output)  # a second setup replaces, never doubles
    logging.getLogger("urllib3.connectionpool").warning("Connection pool is full")
    logging.getLogger("azure.core.pipeline.policies.http_logging_policy").info("Request URL")
    logging.getLogger("appgw_sse.reconciler").info("gateway agw: applying x for routes shop/a")
    ref = {"kind": "SseRoute", "namespace": "shop", "name": "a"}
    logging.getLogger("kopf.objects").error("Handler failed", extra={"k8s_ref": ref})
    applying, failed = output.getvalue().splitlines()
    assert applying.endswith(
        " INFO    appgw_sse.reconciler: gateway agw: applying x for routes shop/a"
    )
    assert failed.endswith(" ERROR   kopf.objects: [shop/a] Handler failed")


def test_bad_format_or_level_is_refused() -> None:
    with pytest.raises(ValueError, match="log format"):
        logs.setup("yaml", "info")
    with pytest.raises(ValueError, match="log level"):
        logs.setup("text", "verbose")
