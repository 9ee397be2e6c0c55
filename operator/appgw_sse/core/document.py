"""Reading and writing the owned fields of an ARM Application Gateway document (pure).

The document is the JSON that ARM returns for GET (and `az network application-gateway show`
prints). Everything outside the owned fields is carried through untouched.
"""

import copy
import ipaddress
import re
from collections.abc import Iterable, Mapping
from typing import Any

from appgw_sse.core.contract import AGIC_TAGS, ARM_DEFAULT_REQUEST_TIMEOUT, V1_SKU_TIERS

Document = Mapping[str, Any]

# Hostnames that stay inside a private network: a setting that only reaches these may exceed
# the 240 s cap for internet-facing backends.
_PRIVATE_SUFFIXES = (".internal", ".local", ".cluster.local", ".privatelink.azurewebsites.net")


# The shape of a gateway id; each part's own rules are in core/contract.py.
GATEWAY_ID_SHAPE = re.compile(
    r"/subscriptions/([^/]*)/resourceGroups/([^/]*)"
    r"/providers/Microsoft\.Network/applicationGateways/([^/]*)",
    re.IGNORECASE,
)


def split_gateway_id(gateway_id: str) -> tuple[str, str, str]:
    match = GATEWAY_ID_SHAPE.fullmatch(gateway_id)
    if match is None or not all(match.groups()):
        raise ValueError(f"not an Application Gateway id: {gateway_id}")
    subscription, group, name = match.groups()
    return subscription, group, name


def name_from_id(gateway_id: str) -> str:
    """The gateway's name: the last segment of its resource id."""
    return gateway_id.rstrip("/").rsplit("/", 1)[-1]


def _properties(document: Document) -> Mapping[str, Any]:
    props = document.get("properties")
    return props if isinstance(props, Mapping) else {}


def gateway_name(document: Document) -> str:
    return str(document.get("name") or name_from_id(str(document.get("id", ""))))


def sku_tier(document: Document) -> str:
    sku = _properties(document).get("sku") or document.get("sku") or {}
    return str(sku.get("tier") or sku.get("name") or "")


def is_v1_sku(document: Document) -> bool:
    return sku_tier(document).lower() in V1_SKU_TIERS


def agic_tags(document: Document) -> list[str]:
    tags = document.get("tags") or {}
    return [tag for tag in AGIC_TAGS if tag in tags]


def response_buffering_enabled(document: Document) -> bool:
    """Gateway-wide response buffering; ARM's default (field absent) is on."""
    global_config = _properties(document).get("globalConfiguration") or {}
    return bool(global_config.get("enableResponseBuffering", True))


def _settings(document: Document) -> list[Mapping[str, Any]]:
    return list(_properties(document).get("backendHttpSettingsCollection") or [])


def backend_setting_timeouts(document: Document) -> dict[str, int]:
    """Name -> requestTimeout of every backend setting (ARM's default when the field is absent)."""
    result = {}
    for setting in _settings(document):
        props = setting.get("properties") or {}
        result[str(setting["name"])] = int(props.get("requestTimeout", ARM_DEFAULT_REQUEST_TIMEOUT))
    return result


def _last_segment(reference: Any) -> str | None:
    if isinstance(reference, Mapping) and isinstance(reference.get("id"), str):
        return name_from_id(str(reference["id"]))
    return None


def _is_internet_address(address: Mapping[str, Any]) -> bool:
    if address.get("ipAddress"):
        try:
            return ipaddress.ip_address(str(address["ipAddress"])).is_global
        except ValueError:
            return True
    fqdn = str(address.get("fqdn") or "").lower().rstrip(".")
    return bool(fqdn) and not fqdn.endswith(_PRIVATE_SUFFIXES)


def settings_with_internet_backends(document: Document) -> set[str]:
    """Settings that some rule pairs with a pool holding a public IP or a public hostname."""
    props = _properties(document)
    external_pools = {
        str(pool["name"])
        for pool in props.get("backendAddressPools") or []
        if any(
            _is_internet_address(address)
            for address in (pool.get("properties") or {}).get("backendAddresses") or []
        )
    }
    pairs: list[tuple[str | None, str | None]] = []
    for rule in props.get("requestRoutingRules") or []:
        rule_props = rule.get("properties") or {}
        pairs.append(
            (
                _last_segment(rule_props.get("backendHttpSettings")),
                _last_segment(rule_props.get("backendAddressPool")),
            )
        )
    for path_map in props.get("urlPathMaps") or []:
        map_props = path_map.get("properties") or {}
        pairs.append(
            (
                _last_segment(map_props.get("defaultBackendHttpSettings")),
                _last_segment(map_props.get("defaultBackendAddressPool")),
            )
        )
        for path_rule in map_props.get("pathRules") or []:
            rule_props = path_rule.get("properties") or {}
            pairs.append(
                (
                    _last_segment(rule_props.get("backendHttpSettings")),
                    _last_segment(rule_props.get("backendAddressPool")),
                )
            )
    return {setting for setting, pool in pairs if setting and pool in external_pools}


def with_response_buffering(document: Document, enabled: bool) -> dict[str, Any]:
    """A copy with only globalConfiguration.enableResponseBuffering changed."""
    result = copy.deepcopy(dict(document))
    props = result.setdefault("properties", {})
    global_config = props.get("globalConfiguration") or {}
    props["globalConfiguration"] = {**global_config, "enableResponseBuffering": enabled}
    return result


def with_request_timeouts(document: Document, timeouts: Mapping[str, int]) -> dict[str, Any]:
    """A copy with only the named settings' requestTimeout changed."""
    result = copy.deepcopy(dict(document))
    for setting in result.get("properties", {}).get("backendHttpSettingsCollection") or []:
        if setting["name"] in timeouts:
            setting.setdefault("properties", {})["requestTimeout"] = timeouts[setting["name"]]
    return result


def backend_setting_draining(document: Document) -> dict[str, int]:
    """Name -> connection draining of every backend setting, as core/fields.py's
    ConnectionDraining holds it: drainTimeoutInSec while enabled, -drainTimeoutInSec while
    disabled with seconds stored, 0 while disabled without them or absent."""
    result = {}
    for setting in _settings(document):
        draining = (setting.get("properties") or {}).get("connectionDraining") or {}
        seconds = int(draining.get("drainTimeoutInSec") or 0)
        result[str(setting["name"])] = seconds if draining.get("enabled") else -seconds
    return result


def with_connection_draining(document: Document, drains: Mapping[str, int]) -> dict[str, Any]:
    """A copy with only the named settings' connectionDraining changed, each given as
    backend_setting_draining reads it. ARM requires drainTimeoutInSec even while disabled:
    0 keeps the seconds stored (1 if none)."""
    result = copy.deepcopy(dict(document))
    for setting in result.get("properties", {}).get("backendHttpSettingsCollection") or []:
        if setting["name"] in drains:
            props = setting.setdefault("properties", {})
            seconds = drains[setting["name"]]
            old = props.get("connectionDraining") or {}
            props["connectionDraining"] = {
                **old,
                "enabled": seconds > 0,
                "drainTimeoutInSec": abs(seconds) or old.get("drainTimeoutInSec") or 1,
            }
    return result


def connection_draining_absent(document: Document, setting: str) -> bool:
    return any(
        s["name"] == setting and "connectionDraining" not in (s.get("properties") or {})
        for s in _settings(document)
    )


def without_connection_draining(document: Document, settings: set[str]) -> dict[str, Any]:
    """A copy with the named settings' connectionDraining removed (as they were created)."""
    result = copy.deepcopy(dict(document))
    for setting in result.get("properties", {}).get("backendHttpSettingsCollection") or []:
        if setting["name"] in settings:
            (setting.get("properties") or {}).pop("connectionDraining", None)
    return result


def missing_settings(document: Document, names: Iterable[str]) -> list[str]:
    present = set(backend_setting_timeouts(document))
    return [name for name in names if name not in present]


# Keys that ARM keeps beside `properties`; everything else in a flattened document belongs inside.
_RESOURCE_KEYS = frozenset({"id", "name", "type", "etag", "location", "tags", "zones", "identity"})


def _nest(resource: Mapping[str, Any], keep: frozenset[str]) -> dict[str, Any]:
    nested = {key: value for key, value in resource.items() if key in keep}
    nested["properties"] = {
        key: value for key, value in resource.items() if key not in keep and key != "resourceGroup"
    }
    return nested


def to_arm_document(document: Mapping[str, Any]) -> dict[str, Any]:
    """ARM's nested shape from either ARM JSON or the flattened JSON that `az ... show` prints."""
    if "properties" in document:
        return dict(document)
    result = _nest(document, _RESOURCE_KEYS)
    for key, value in result["properties"].items():
        if isinstance(value, list) and all(
            isinstance(item, Mapping) and "name" in item and "properties" not in item
            for item in value
        ):
            result["properties"][key] = [
                _nest(item, frozenset({"id", "name", "type", "etag"})) for item in value
            ]
    return result
