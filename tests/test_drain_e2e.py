"""spec.drainTimeout end to end: connection draining applied, raised, restored and warned about,
on a real API server against the ARM emulator."""

from collections.abc import Callable
from typing import Any

from tests.support.e2e import Rig, route_manifest, wait_for

SETTING = "notifications-http"


def draining(document: dict[str, Any], setting: str = SETTING) -> dict[str, Any] | None:
    found = next(
        s for s in document["properties"]["backendHttpSettingsCollection"] if s["name"] == setting
    )
    return found["properties"].get("connectionDraining")  # type: ignore[no-any-return]


def status_drain(rig: Rig, name: str) -> int:
    route = rig.route("shop", name) or {}
    rows = route["status"]["gateway"]["backendSettings"]
    return int(next(r for r in rows if r["name"] == SETTING)["connectionDraining"])


def test_drain_timeout_applied_raised_restored(rig: Rig) -> None:
    rig.operator()
    assert draining(rig.emulator.gateway()) is None
    rig.apply(route_manifest("notifications", drainTimeout="2m"))
    rig.wait_condition("shop", "notifications", "True", "Applied")
    assert draining(rig.emulator.gateway()) == {"enabled": True, "drainTimeoutInSec": 120}
    assert status_drain(rig, "notifications") == 120
    assert not rig.events("shop", "DrainingOff")

    # A second route needing more raises it; the ledger remembers the original (off).
    rig.apply(route_manifest("chat", drainTimeout="5m"))
    rig.wait_condition("shop", "chat", "True", "Applied")
    assert draining(rig.emulator.gateway()) == {"enabled": True, "drainTimeoutInSec": 300}
    ledger = rig.ledger()["data"]["ledger"]
    assert (
        '"connectionDraining":{"notifications-http":'
        '{"original":0,"applied":300,"originalAbsent":true}}'
    ) in ledger

    # Less is never set while a route needs more: deleting the bigger one goes back to 120.
    rig.kubectl("delete", "sser", "-n", "shop", "chat", "--wait=false")
    wait_for("chat gone", lambda: rig.route("shop", "chat") is None)
    assert draining(rig.emulator.gateway()) == {"enabled": True, "drainTimeoutInSec": 120}

    rig.kubectl("delete", "sser", "-n", "shop", "notifications", "--wait=false")
    wait_for("notifications gone", lambda: rig.route("shop", "notifications") is None)
    assert draining(rig.emulator.gateway()) is None  # absent at first: restored absent


def set_draining(enabled: bool, seconds: int) -> Callable[[dict[str, Any]], None]:
    """Someone else's change to the setting's connectionDraining, for third_party_put."""

    def change(document: dict[str, Any]) -> None:
        for setting in document["properties"]["backendHttpSettingsCollection"]:
            if setting["name"] == SETTING:
                draining = {"enabled": enabled, "drainTimeoutInSec": seconds}
                setting["properties"]["connectionDraining"] = draining

    return change


def test_a_higher_drain_someone_set_is_kept_and_not_restored(rig: Rig) -> None:
    rig.emulator.third_party_put(set_draining(enabled=True, seconds=1800))
    rig.operator()
    rig.apply(route_manifest("notifications", drainTimeout="2m"))
    rig.wait_condition("shop", "notifications", "True", "Applied")
    assert draining(rig.emulator.gateway()) == {"enabled": True, "drainTimeoutInSec": 1800}
    assert status_drain(rig, "notifications") == 1800
    rig.kubectl("delete", "sser", "-n", "shop", "notifications", "--wait=false")
    wait_for("route gone", lambda: rig.route("shop", "notifications") is None)
    assert draining(rig.emulator.gateway()) == {"enabled": True, "drainTimeoutInSec": 1800}


def test_draining_off_with_seconds_stored_is_restored_with_them(rig: Rig) -> None:
    """ARM keeps drainTimeoutInSec while draining is disabled (the portal offers it when
    draining is turned on): the operator's seconds never replace the user's."""
    rig.emulator.third_party_put(set_draining(enabled=False, seconds=45))
    rig.operator()
    rig.apply(route_manifest("notifications", drainTimeout="2m"))
    rig.wait_condition("shop", "notifications", "True", "Applied")
    assert draining(rig.emulator.gateway()) == {"enabled": True, "drainTimeoutInSec": 120}
    assert status_drain(rig, "notifications") == 120
    ledger = rig.ledger()["data"]["ledger"]
    assert '"connectionDraining":{"notifications-http":{"original":-45,"applied":120}}' in ledger

    rig.kubectl("delete", "sser", "-n", "shop", "notifications", "--wait=false")
    wait_for("route gone", lambda: rig.route("shop", "notifications") is None)
    assert draining(rig.emulator.gateway()) == {"enabled": False, "drainTimeoutInSec": 45}


def test_a_route_without_drain_timeout_on_undrained_settings_is_warned(rig: Rig) -> None:
    rig.operator()
    rig.apply(route_manifest("notifications"))
    rig.wait_condition("shop", "notifications", "True", "Applied")
    [event] = wait_for("a DrainingOff event", lambda: rig.events("shop", "DrainingOff"))
    assert event["type"] == "Warning"
    assert "connection draining is off on notifications-http" in event["message"]
    assert "any update of the gateway" in event["message"]
    assert draining(rig.emulator.gateway()) is None  # warned about, never changed
