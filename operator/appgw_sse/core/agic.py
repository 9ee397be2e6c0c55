"""AGIC mode (pure): on a gateway AGIC manages, the operator never writes the gateway; it sets
AGIC's per-Ingress annotations on the Ingresses that route to a route's Service instead.

Assumed of AGIC (see docs/agic.md): it reads `appgw.ingress.kubernetes.io/request-timeout` (seconds),
`connection-draining` (a boolean) and `connection-draining-timeout` (seconds) from each Ingress
of its class and writes them into the backend settings it generates for every backend Service
of that Ingress. It parses them with Go's strconv.Atoi and strconv.ParseBool; a value those
reject it ignores (it uses its default and emits InvalidAnnotation), so here it counts as absent.

The same rules as for gateway fields: never lower a value already there, remember what was
there before (the ledger: per Ingress and annotation, original and applied), restore it when no
route needs it any more, and only while the Ingress still holds the value the operator set.
"""

import dataclasses
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from appgw_sse.core.conditions import Reason
from appgw_sse.core.intent import RouteIntent
from appgw_sse.core.planner import Notice

PREFIX = "appgw.ingress.kubernetes.io/"
REQUEST_TIMEOUT = PREFIX + "request-timeout"
DRAINING = PREFIX + "connection-draining"
DRAINING_TIMEOUT = PREFIX + "connection-draining-timeout"
OWNED_KEYS = (REQUEST_TIMEOUT, DRAINING, DRAINING_TIMEOUT)
INGRESS_CLASS = "azure-application-gateway"
CLASS_ANNOTATION = "kubernetes.io/ingress.class"
CLASS_ANNOTATION_VALUE = "azure/application-gateway"


@dataclass(frozen=True)
class Ingress:
    name: str
    annotations: Mapping[str, str]
    services: frozenset[str]  # Services its rules and default backend route to


def _services(spec: Mapping[str, Any]) -> set[str]:
    backends = [spec.get("defaultBackend") or {}]
    for rule in spec.get("rules") or ():
        backends += [p.get("backend") or {} for p in (rule.get("http") or {}).get("paths") or ()]
    return {str(b["service"]["name"]) for b in backends if (b.get("service") or {}).get("name")}


def agic_ingress(body: Mapping[str, Any]) -> Ingress | None:
    """An Ingress object (networking.k8s.io/v1) if AGIC serves it (its class), else None."""
    meta, spec = body.get("metadata") or {}, body.get("spec") or {}
    annotations = dict(meta.get("annotations") or {})
    ours = spec.get("ingressClassName") == INGRESS_CLASS or (
        annotations.get(CLASS_ANNOTATION) == CLASS_ANNOTATION_VALUE
    )
    if not ours:
        return None
    return Ingress(str(meta["name"]), annotations, frozenset(_services(spec)))


@dataclass(frozen=True)
class Owned:
    original: str | None  # None: the annotation was absent
    applied: str


Slot = tuple[str, str]  # (Ingress name, annotation key)


@dataclass(frozen=True)
class IngressLedger:
    """What the operator set on the Ingresses of one namespace, and what was there before."""

    namespace: str
    owned: Mapping[Slot, Owned] = dataclasses.field(default_factory=dict)

    @property
    def is_empty(self) -> bool:
        return not self.owned

    def merged(self, other: "IngressLedger") -> "IngressLedger":
        return dataclasses.replace(self, owned={**self.owned, **other.owned})

    def to_json(self) -> str:
        data: dict[str, Any] = {"namespace": self.namespace, "ingresses": {}}
        for (ingress, key), owned in sorted(self.owned.items()):
            data["ingresses"].setdefault(ingress, {})[key] = {
                "original": owned.original,
                "applied": owned.applied,
            }
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> "IngressLedger":
        data = json.loads(text)
        owned = {
            (ingress, key): Owned(entry["original"], str(entry["applied"]))
            for ingress, keys in (data.get("ingresses") or {}).items()
            for key, entry in keys.items()
            if key in OWNED_KEYS
        }
        return cls(namespace=str(data["namespace"]), owned=owned)


_ATOI = re.compile(r"[+-]?[0-9]+")  # Go's strconv.Atoi: an optional sign, ASCII digits only
_INT64 = 2**63
_BOOLS = {
    **dict.fromkeys(("1", "t", "T", "TRUE", "true", "True"), True),
    **dict.fromkeys(("0", "f", "F", "FALSE", "false", "False"), False),
}


def go_atoi(text: str | None) -> int | None:
    """`text` as Go's strconv.Atoi reads it (64-bit), None where it returns an error: no spaces,
    underscores or non-ASCII digits, which Python's int() accepts."""
    if text is None or not _ATOI.fullmatch(text):
        return None
    value = int(text)
    return value if -_INT64 <= value < _INT64 else None


def go_parse_bool(text: str | None) -> bool | None:
    """`text` as Go's strconv.ParseBool reads it, None where it returns an error."""
    return _BOOLS.get(text) if text is not None else None


def _seconds(text: str | None) -> int | None:
    return go_atoi(text)


def _satisfies(key: str, current: str | None, required: str) -> bool:
    if key == DRAINING:
        return go_parse_bool(current) is True
    have = _seconds(current)
    return have is not None and have >= int(required)


def _settle(key: str, original: str | None, required: str) -> str:
    if key == DRAINING:
        return required
    return str(max(_seconds(original) or 0, int(required)))


def requirements(
    routes: Iterable[RouteIntent], ingresses: Iterable[Ingress]
) -> tuple[dict[Slot, str], dict[str, list[str]]]:
    """What the routes need of each Ingress annotation, and each route's Ingresses."""
    ingresses = list(ingresses)
    required: dict[Slot, str] = {}
    served: dict[str, list[str]] = {}

    def need(slot: Slot, value: int | str) -> None:
        known = required.get(slot)
        if isinstance(value, int):
            value = str(max(value, _seconds(known) or 0))
        required[slot] = value

    for route in routes:
        matched = [i for i in ingresses if route.backend_service in i.services]
        served[route.key] = sorted(i.name for i in matched)
        for ingress in matched:
            need((ingress.name, REQUEST_TIMEOUT), route.request_timeout)
            if route.drain_timeout is not None:
                need((ingress.name, DRAINING), "true")
                need((ingress.name, DRAINING_TIMEOUT), route.drain_timeout)
    return required, served


def shared_services(
    routes: Iterable[RouteIntent], ingresses: Iterable[Ingress]
) -> dict[str, dict[str, list[str]]]:
    """Route key -> Ingress -> the other Services of that Ingress: AGIC applies an Ingress's
    annotations to all of its backends, so the route's values change theirs too."""
    ingresses = list(ingresses)
    shared: dict[str, dict[str, list[str]]] = {}
    for route in routes:
        for ingress in ingresses:
            others = sorted(ingress.services - {route.backend_service})
            if route.backend_service in ingress.services and others:
                shared.setdefault(route.key, {})[ingress.name] = others
    return shared


def shared_words(shared: Mapping[str, Sequence[str]]) -> str:
    """`shared_services` of one route, as words for its condition and Event."""
    return "; ".join(
        f"Ingress {ingress} also routes to Service {', '.join(others)}"
        for ingress, others in sorted(shared.items())
    )


@dataclass(frozen=True)
class IngressPlan:
    patches: Mapping[str, Mapping[str, str | None]]  # Ingress -> annotation -> value (None: remove)
    ledger: IngressLedger
    served: Mapping[str, Sequence[str]]  # route key -> the Ingresses that serve it
    notices: tuple[Notice, ...] = ()
    # route key -> Ingress -> its other Services, which AGIC gives the same values
    shared: Mapping[str, Mapping[str, Sequence[str]]] = dataclasses.field(default_factory=dict)


def plan_ingresses(
    routes: Sequence[RouteIntent],
    ingresses: Sequence[Ingress],
    ledger: IngressLedger,
    release: bool = False,
) -> IngressPlan:
    """The annotation patches for one namespace. `release`: values no route needs any more are
    forgotten rather than restored (routes deleted with restoreOnDelete false)."""
    by_name = {i.name: i for i in ingresses}
    required, served = requirements(routes, ingresses)
    patches: dict[str, dict[str, str | None]] = {}
    owned: dict[Slot, Owned] = {}
    notices: list[Notice] = []
    for slot in sorted(set(required) | set(ledger.owned)):
        ingress_name, key = slot
        ingress = by_name.get(ingress_name)
        if ingress is None:
            continue  # the Ingress is gone (or left AGIC's class): nothing to restore
        current = ingress.annotations.get(key)
        entry, need = ledger.owned.get(slot), required.get(slot)
        foreign = entry is not None and current != entry.applied
        desired: str | None = current
        if need is None:
            if entry is not None and not release:
                if foreign:
                    notices.append(
                        Notice(
                            level="Warning",
                            message=f"left {key} on Ingress {ingress_name} at {current!r}: "
                            f"someone changed it after the operator set {entry.applied!r}, so "
                            f"the original {entry.original!r} is not restored",
                        )
                    )
                else:
                    desired = entry.original
        elif entry is None or foreign:
            if not _satisfies(key, current, need):
                original = entry.original if entry is not None else current
                desired = _settle(key, original, need)
                owned[slot] = Owned(original, desired)
        else:
            desired = _settle(key, entry.original, need)
            if desired != entry.original:
                owned[slot] = Owned(entry.original, desired)
            else:
                desired = entry.original
        if desired != current:
            patches.setdefault(ingress_name, {})[key] = desired
    shared = shared_services(routes, ingresses)
    for route_key, by_ingress in shared.items():
        changed = {i: o for i, o in by_ingress.items() if any(patches.get(i, {}).values())}
        if changed:
            notices.append(
                Notice(
                    level="Warning",
                    route=route_key,
                    reason=Reason.INGRESS_SHARED,
                    message=f"AGIC applies an Ingress's annotations to every Service it routes "
                    f"to, so the values set for this route also change the backend settings of "
                    f"other Services: {shared_words(changed)}",
                )
            )
    return IngressPlan(
        patches=patches,
        ledger=IngressLedger(ledger.namespace, dict(sorted(owned.items()))),
        served=served,
        notices=tuple(notices),
        shared=shared,
    )


def buffering_command(gateway_id: str) -> str:
    """The az CLI command that turns the gateway's response buffering off."""
    parts = gateway_id.strip("/").split("/")
    group, name = parts[3], parts[-1]
    return (
        f"az network application-gateway update -g {group} -n {name} "
        "--set globalConfiguration.enableResponseBuffering=false"
    )
