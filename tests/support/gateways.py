"""Small ARM gateway documents for tests."""

import copy
from typing import Any

from appgw_sse.core.claims import user_tags
from appgw_sse.core.duration import derived_request_timeout
from appgw_sse.core.fields import REQUEST_TIMEOUT, RESPONSE_BUFFERING
from appgw_sse.core.intent import RouteIntent
from appgw_sse.core.ledger import Ledger, Owned

SUB = "00000000-0000-4000-8000-000000000001"


def gateway_id(name: str = "agw", group: str = "rg") -> str:
    return (
        f"/subscriptions/{SUB}/resourceGroups/{group}/providers/Microsoft.Network"
        f"/applicationGateways/{name}"
    )


def gateway_document(
    settings: dict[str, int | None],
    *,
    name: str = "agw",
    buffering: bool | None = True,
    tier: str = "Standard_v2",
    tags: dict[str, str] | None = None,
    pools: dict[str, list[dict[str, str]]] | None = None,
    rules: list[tuple[str, str]] = (),  # type: ignore[assignment]
) -> dict[str, Any]:
    """A v2 gateway with the given settings (None = requestTimeout omitted) and pool wiring."""
    gid = gateway_id(name)
    props: dict[str, Any] = {
        "provisioningState": "Succeeded",
        "sku": {"name": tier, "tier": tier, "capacity": 2},
        "backendHttpSettingsCollection": [
            {
                "name": setting,
                "id": f"{gid}/backendHttpSettingsCollection/{setting}",
                "properties": {"port": 80, "protocol": "Http", "cookieBasedAffinity": "Disabled"}
                | ({} if timeout is None else {"requestTimeout": timeout}),
            }
            for setting, timeout in settings.items()
        ],
        "backendAddressPools": [
            {
                "name": pool,
                "id": f"{gid}/backendAddressPools/{pool}",
                "properties": {"backendAddresses": addresses},
            }
            for pool, addresses in (pools or {}).items()
        ],
        "requestRoutingRules": [
            {
                "name": f"rule-{i}",
                "id": f"{gid}/requestRoutingRules/rule-{i}",
                "properties": {
                    "ruleType": "Basic",
                    "priority": 100 + i,
                    "backendHttpSettings": {"id": f"{gid}/backendHttpSettingsCollection/{s}"},
                    "backendAddressPool": {"id": f"{gid}/backendAddressPools/{p}"},
                },
            }
            for i, (s, p) in enumerate(rules)
        ],
    }
    if buffering is not None:
        props["globalConfiguration"] = {
            "enableRequestBuffering": True,
            "enableResponseBuffering": buffering,
        }
    return {
        "id": gid,
        "name": name,
        "type": "Microsoft.Network/applicationGateways",
        "location": "westeurope",
        "tags": dict(tags or {}),
        "etag": 'W/"1"',
        "properties": props,
    }


def without_owned_fields(document: dict[str, Any]) -> dict[str, Any]:
    """The document minus the two fields the operator may change, and its claim tags."""
    result = copy.deepcopy(document)
    result["tags"] = user_tags(result.get("tags") or {})
    props = result.get("properties", {})
    props.get("globalConfiguration", {}).pop("enableResponseBuffering", None)
    if props.get("globalConfiguration") == {}:
        props.pop("globalConfiguration")
    for setting in props.get("backendHttpSettingsCollection", []):
        setting.get("properties", {}).pop("requestTimeout", None)
    return result


def owning(
    *,
    buffering: tuple[bool, bool] | None = None,
    guid: str | None = None,
    gateway: str | None = None,
    **timeouts: tuple[int, int],
) -> Ledger:
    """A ledger owning response buffering and/or the named settings' requestTimeout, each given
    as (original, applied)."""
    owned = {REQUEST_TIMEOUT.at(s): Owned(*values) for s, values in timeouts.items()}
    if buffering is not None:
        owned[RESPONSE_BUFFERING.at()] = Owned(*buffering)
    return Ledger(gateway_id=gateway or gateway_id(), resource_guid=guid).with_owned(owned)


def intent(
    name: str,
    settings: tuple[str, ...] = ("a",),
    idle: int = 45,
    timeout: int | None = None,
    buffering: bool = True,
    drain: int | None = None,
    service: str | None = None,
) -> RouteIntent:
    """Route ns/`name`'s requirements; `buffering`: whether it needs response buffering off;
    `drain`: its drainTimeout in seconds; `service`: its backend.serviceName."""
    return RouteIntent(
        key=f"ns/{name}",
        gateway_id=gateway_id(),
        backend_settings=settings,
        request_timeout=timeout or derived_request_timeout(idle),
        idle_seconds=idle,
        disable_buffering=buffering,
        drain_timeout=drain,
        backend_service=service,
    )
