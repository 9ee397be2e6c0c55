"""The operator end to end: `appgw-sse run` as a process, driven with kubectl, against the
project's ARM emulator and a realistic Kubernetes API."""

from tests.support.e2e import Rig, route_manifest, wait_for


def timeouts(document: dict) -> dict[str, int]:
    return {s["name"]: s["properties"]["requestTimeout"]
            for s in document["properties"]["backendHttpSettingsCollection"]}  # fmt: skip


def buffering(document: dict) -> bool:
    return bool(document["properties"]["globalConfiguration"]["enableResponseBuffering"])


def test_create_update_delete_restores(rig: Rig) -> None:
    rig.operator()
    original = rig.emulator.gateway()
    rig.apply(route_manifest("notifications"))
    rig.wait_condition("shop", "notifications", "True", "Applied")
    accepted = rig.condition("shop", "notifications", "Accepted")
    document = rig.emulator.gateway()
    assert buffering(document) is False
    assert timeouts(document)["notifications-http"] == 68
    route = rig.route("shop", "notifications")
    assert route["status"]["requestTimeoutSeconds"] == 68
    assert route["status"]["gateway"] == {
        "name": "agw-shop-prod", "responseBuffering": "Disabled",
        "backendSettings": [{"name": "notifications-http", "requestTimeout": 68}],
    }
    assert "sse.appgw.dev/finalizer" in route["metadata"]["finalizers"]
    assert len(rig.emulator.requests("PUT")) == 1
    table = rig.kubectl("get", "sser", "-n", "shop")
    assert "agw-shop-prod" in table and "True" in table and "Applied" in table

    rig.apply(route_manifest("notifications", idle="100s"))
    rig.wait_condition("shop", "notifications", "True", "Applied")
    assert timeouts(rig.emulator.gateway())["notifications-http"] == 150
    # Accepted stayed True through the update: its lastTransitionTime must not move.
    assert rig.condition("shop", "notifications", "Accepted") == accepted | {"observedGeneration": 2}

    rig.kubectl("delete", "sser", "-n", "shop", "notifications", "--wait=false")
    wait_for("route gone", lambda: rig.route("shop", "notifications") is None)
    restored = rig.emulator.gateway()
    assert buffering(restored) is True
    assert timeouts(restored) == timeouts(original)
    assert len(rig.emulator.requests("PUT")) == 3
    assert rig.events("shop", "Applied")
