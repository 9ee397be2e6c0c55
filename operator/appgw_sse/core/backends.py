"""Which pods a route selects and the annotations they should carry (pure)."""

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from appgw_sse.core.contract import API_GROUP
from appgw_sse.core.duration import format_duration

ROUTES_ANNOTATION = f"{API_GROUP}/routes"
HEADERS_ANNOTATION = f"{API_GROUP}/response-headers"
IDLE_ANNOTATION = f"{API_GROUP}/idle-interval"
CONFORMANCE_ANNOTATION = f"{API_GROUP}/conformance"
OWNED_ANNOTATIONS = (ROUTES_ANNOTATION, HEADERS_ANNOTATION, IDLE_ANNOTATION, CONFORMANCE_ANNOTATION)


class Requirement(Protocol):
    @property
    def key(self) -> str: ...
    @property
    def operator(self) -> str: ...
    @property
    def values(self) -> Sequence[str]: ...


class Selector(Protocol):
    """A metav1.LabelSelector (the spec's LabelSelector model is one)."""

    @property
    def match_labels(self) -> Mapping[str, str]: ...
    @property
    def match_expressions(self) -> Sequence[Requirement]: ...


def selects(selector: Selector, labels: Mapping[str, str]) -> bool:
    """metav1.LabelSelector semantics: every matchLabels pair and every expression holds."""
    if any(labels.get(key) != value for key, value in selector.match_labels.items()):
        return False
    for requirement in selector.match_expressions:
        present = requirement.key in labels
        value = labels.get(requirement.key)
        holds = {
            "In": present and value in requirement.values,
            "NotIn": not present or value not in requirement.values,
            "Exists": present,
            "DoesNotExist": not present,
        }[requirement.operator]
        if not holds:
            return False
    return True


def service_selects(selector: Mapping[str, str] | None, labels: Mapping[str, str]) -> bool:
    """A Service's selector; a Service without one selects no pods (its endpoints are manual)."""
    return bool(selector) and all(labels.get(k) == v for k, v in (selector or {}).items())


@dataclass(frozen=True)
class BackendRoute:
    """What one route asks of the pods it selects."""

    key: str  # namespace/name
    name: str
    headers: Mapping[str, str]
    idle_seconds: int


@dataclass(frozen=True)
class PodContract:
    annotations: dict[str, str]
    conflicts: dict[str, str]  # route key -> why its headers lost


def pod_contract(routes: Sequence[BackendRoute]) -> PodContract:
    """The annotations for a pod selected by `routes` (at least one). When routes disagree on a
    header, the first route by name wins and the others are told which header they lost."""
    ordered = sorted(routes, key=lambda r: r.key)
    chosen: dict[str, tuple[str, str, str]] = {}  # lower-case name -> (name, value, route)
    conflicts: dict[str, str] = {}
    for route in ordered:
        for name, value in route.headers.items():
            winner = chosen.setdefault(name.lower(), (name, value, route.name))
            if winner[1] != value:
                conflicts[route.key] = (
                    f"header {name} conflicts with route {winner[2]}, whose value the pod carries"
                )
    headers = {name: value for name, value, _ in chosen.values()}
    annotations = {
        ROUTES_ANNOTATION: ",".join(sorted(r.name for r in ordered)),
        HEADERS_ANNOTATION: json.dumps(headers, sort_keys=True, separators=(",", ":")),
        IDLE_ANNOTATION: format_duration(min(r.idle_seconds for r in ordered)),
    }
    return PodContract(annotations=annotations, conflicts=conflicts)


def annotation_patch(
    current: Mapping[str, str], desired: Mapping[str, str] | None
) -> dict[str, str | None] | None:
    """The merge-patch for metadata.annotations that takes our keys from `current` to `desired`
    (None: the pod is no longer selected, so all of ours go). None when nothing differs.
    Keys that are not ours are never in the patch."""
    target = dict(desired or {})
    patch: dict[str, str | None] = {}
    for key in OWNED_ANNOTATIONS:
        if key == CONFORMANCE_ANNOTATION and desired is not None:
            continue  # the probe owns it while the pod is selected
        if key in target and current.get(key) != target[key]:
            patch[key] = target[key]
        elif key not in target and key in current:
            patch[key] = None
    return patch or None


CONFORMANT = "ok"
UNREACHABLE = "unreachable"


def conformance(status: int, headers: Mapping[str, str], expected: Mapping[str, str]) -> str:
    """`ok`, or what the response does wrong against the header contract, for the annotation."""
    got = {name.lower(): value for name, value in headers.items()}
    problems = [] if status == 200 else [f"status {status}"]
    for name, value in expected.items():
        key, actual = name.lower(), got.get(name.lower())
        if key == "transfer-encoding":
            continue  # a stream may also be sent unframed until close; Content-Length is the sin
        if key == "connection" and actual is None:
            continue  # HTTP/1.1 keeps connections alive unless told otherwise
        if actual is None:
            problems.append(f"missing {name}")
        elif key == "content-type":
            if actual.split(";")[0].strip().lower() != value.split(";")[0].strip().lower():
                problems.append(f"{name} is {actual}")
        elif key == "cache-control":
            if not {t.strip() for t in value.lower().split(",")} <= {
                t.strip() for t in actual.lower().split(",")
            }:
                problems.append(f"{name} is {actual}")
        elif actual.lower() != value.lower():
            problems.append(f"{name} is {actual}")
    if "content-length" in got:
        problems.append("Content-Length set (buffered, not streamed)")
    return "; ".join(problems) or CONFORMANT
