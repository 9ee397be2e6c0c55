"""`appgw-sse plan`: the review a GitOps pull request needs, computed without a cluster or Azure."""

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from appgw_sse.core import document as doc
from appgw_sse.core.conditions import Reason
from appgw_sse.core.duration import format_duration
from appgw_sse.core.fields import FIELDS
from appgw_sse.core.ledger import Ledger
from appgw_sse.core.planner import DEFAULT_OWNER, Plan, RouteOutcome, plan_gateway
from appgw_sse.models.route import SpecError, SseRoute, route_from_manifest


class InputError(Exception):
    """Bad input; the message names the file, the object and the field."""


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror}") from None


def load_routes(path: Path) -> list[SseRoute]:
    """SseRoutes from a multi-document YAML file (a `kind: List` is unpacked)."""
    try:
        documents = [d for d in yaml.safe_load_all(_read(path)) if d is not None]
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML: {exc}") from None
    manifests: list[tuple[str, Any]] = []
    for index, document in enumerate(documents):
        items = document.get("items") if isinstance(document, dict) else None
        if isinstance(document, dict) and document.get("kind") == "List":
            manifests += [
                (f"document {index + 1} item {i + 1}", m) for i, m in enumerate(items or [])
            ]
        else:
            manifests.append((f"document {index + 1}", document))
    routes = []
    for where, manifest in manifests:
        metadata = manifest.get("metadata") if isinstance(manifest, dict) else None
        metadata = metadata if isinstance(metadata, dict) else {}
        name = metadata.get("name")
        label = f"SseRoute {metadata.get('namespace') or 'default'}/{name}" if name else where
        try:
            routes.append(route_from_manifest(manifest))
        except SpecError as exc:
            raise InputError("\n".join(f"{path}: {label}: {p}" for p in exc.problems)) from None
    keys = [route.key for route in routes]
    duplicates = sorted({key for key in keys if keys.count(key) > 1})
    if duplicates:
        raise InputError(f"{path}: SseRoute {duplicates[0]} is defined more than once")
    return routes


_GATEWAY_TYPE = "Microsoft.Network/applicationGateways"


def load_gateways(path: Path) -> list[dict[str, Any]]:
    """Gateway documents: one ARM/az JSON object or a list of them, each with its `id`."""
    try:
        data = json.loads(_read(path))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON: {exc}") from None
    documents = data if isinstance(data, list) else [data]
    result = []
    for index, document in enumerate(documents):
        where = f"{path}: gateway {index + 1}"
        if not isinstance(document, dict) or not isinstance(document.get("id"), str):
            raise InputError(f"{where}: id: required (the ARM resource id)")
        # Another resource's JSON (a VM, a list envelope) would otherwise plan as "no changes".
        kind = document.get("type", _GATEWAY_TYPE)
        if not isinstance(kind, str) or kind.lower() != _GATEWAY_TYPE.lower():
            raise InputError(f"{where}: type: {kind!r} is not {_GATEWAY_TYPE}")
        try:
            doc.split_gateway_id(document["id"])
        except ValueError:
            raise InputError(
                f"{where}: id: {document['id']!r} is not an Application Gateway resource id"
            ) from None
        result.append(doc.to_arm_document(document))
    return result


def load_ledgers(path: Path | None) -> dict[str, Ledger]:
    if path is None:
        return {}
    try:
        data = json.loads(_read(path))
        ledgers = [Ledger.from_data(item) for item in (data if isinstance(data, list) else [data])]
    except (json.JSONDecodeError, ValueError) as exc:
        raise InputError(f"{path}: not a ledger: {exc}") from None
    return {ledger.gateway_id.lower(): ledger for ledger in ledgers}


def plan_all(
    routes: Sequence[SseRoute],
    gateways: Sequence[dict[str, Any]],
    ledgers: dict[str, Ledger],
    owner: str = DEFAULT_OWNER,
) -> list[Plan]:
    plans = []
    for gateway in gateways:
        gateway_id = str(gateway["id"])
        intents = [
            r.spec.intent(r.key) for r in routes if r.spec.gateway.id.lower() == gateway_id.lower()
        ]
        ledger = ledgers.get(gateway_id.lower())
        plans.append(plan_gateway(gateway_id, intents, gateway, ledger, owner=owner))
    return plans


def unconfigurable_routes(plans: Sequence[Plan], routes: Sequence[SseRoute]) -> list[str]:
    """Routes the operator would leave unconfigured, one line each: a pull-request check fails
    on them rather than passing with "no changes"."""
    problems = [
        f"{key}: {outcome.reason.value}: {outcome.message}"
        for plan in plans
        for key, outcome in plan.outcomes.items()
        if outcome.reason is not Reason.APPLIED
    ]
    planned = {key for plan in plans for key in plan.outcomes}
    problems += [
        f"{route.key}: its gateway {route.spec.gateway.id} is not in the --gateway input"
        for route in routes
        if route.key not in planned
    ]
    return problems


def _stream_check(route: SseRoute | None) -> dict[str, str] | None:
    """What the operator will listen to for `route` (spec.streamCheck, defaults applied)."""
    check = route.spec.stream_check if route is not None else None
    if route is None or check is None:
        return None
    listen = format_duration(check.listen_seconds(route.spec.idle_seconds))
    return {"url": check.url, "interval": check.interval, "listen": listen}


def render_text(plans: Sequence[Plan], routes: Sequence[SseRoute]) -> str:
    lines: list[str] = []
    checks = {route.key: _stream_check(route) for route in routes}
    planned = set()
    for plan in plans:
        planned |= set(plan.outcomes)
        lines.append(f"Gateway {doc.name_from_id(plan.gateway_id)}  ({plan.gateway_id})")
        if plan.changes:
            for change in plan.changes:
                lines.append(
                    f"  ~ {change.label}: {change.field.show(change.before)} -> "
                    f"{change.field.show(change.after)}"
                    f"  [{change.kind}{': ' + ', '.join(change.routes) if change.routes else ''}]"
                )
        else:
            lines.append("  no changes")
        for other in plan.claims.others(plan.owner):
            lines.append(f"  claim of {other} (another cluster): {plan.claims.describe(other)}")
        if plan.claims_changed:
            lines.append(f"  claims: {plan.claims_summary}")
        for key, outcome in plan.outcomes.items():
            mark = "ok" if outcome.reason is Reason.APPLIED else "!!"
            lines.append(f"  {mark} {key}: {outcome.reason.value}: {outcome.message}")
            check = checks.get(key)
            if check is not None:
                lines.append(
                    f"       stream check: {check['url']} every {check['interval']}, listening "
                    f"{check['listen']} (StreamVerified)"
                )
        lines += [
            f"  warning: {n.route + ': ' if n.route else ''}{n.message}" for n in plan.notices
        ]
        lines.append("")
    for route in routes:
        if route.key not in planned:
            lines.append(
                f"skipped {route.key}: its gateway {route.spec.gateway.id} is not in the input"
            )
    total = sum(len(plan.changes) for plan in plans)
    puts = sum(1 for plan in plans if plan.changes)
    if total:
        lines.append(
            f"Plan: {total} change(s) in {puts} PUT(s). Every PUT can end live connections "
            "on the gateway."
        )
    else:
        lines.append("Plan: no changes.")
    return "\n".join(lines)


def _outcome_data(outcome: RouteOutcome, route: SseRoute | None) -> dict[str, Any]:
    data: dict[str, Any] = {"reason": outcome.reason.value, "message": outcome.message}
    data["streamCheck"] = _stream_check(route)
    for field in FIELDS:
        values = {p.setting: v for p, v in outcome.values.items() if p.field is field}
        shown = {setting: field.plan_value(value) for setting, value in values.items()}
        data[field.plan_key] = shown if field.per_setting else shown.get(None)
    return data


def render_json(plans: Sequence[Plan], routes: Sequence[SseRoute] = ()) -> str:
    """Each plan: its changes (each naming its field, and its backend setting or null), the
    ledger to keep, each route's outcome with the values it would see and its stream check,
    and the notices."""
    by_key = {route.key: route for route in routes}
    return json.dumps(
        [
            {
                "gateway_id": plan.gateway_id,
                "changes": [
                    {
                        "field": change.field.name,
                        "setting": change.setting,
                        "before": change.field.plan_value(change.before),
                        "after": change.field.plan_value(change.after),
                        "kind": change.kind,
                        "routes": list(change.routes),
                    }
                    for change in plan.changes
                ],
                "ledger": plan.ledger.to_data(),
                "claims": {
                    "owner": plan.owner,
                    "others": {o: plan.claims.describe(o) for o in plan.claims.others(plan.owner)},
                    "change": plan.claims_summary or None,
                    "tags": plan.claims.tags(),
                },
                "outcomes": {
                    key: _outcome_data(o, by_key.get(key)) for key, o in plan.outcomes.items()
                },
                "notices": [
                    {"level": n.level, "message": n.message, "route": n.route} for n in plan.notices
                ],
            }
            for plan in plans
        ],
        indent=2,
    )
