"""The ownership ledger: what the operator changed on a gateway and what it found before.

Only values recorded here are ever restored, and only while the gateway still holds the value
the operator applied, so a change someone else made later is never undone.

A ledger belongs to one instance of its gateway (ARM's `properties.resourceGuid`): a gateway
deleted and created again under the same id is a new instance, whose values an older ledger
knows nothing about, so that ledger is discarded and the original values are read afresh.

Stored as JSON: {"gatewayId", "resourceGuid", then per owned field its ledger key: one
{"original", "applied"} (or null) for a gateway-wide field, an object of them by backend
setting for a per-setting one}.
"""

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic.alias_generators import to_camel

from appgw_sse.core.document import Document
from appgw_sse.core.fields import FIELDS, Place, Value

_ABSENT = ("originalAbsent",)


@dataclass(frozen=True)
class Owned:
    original: Value
    applied: Value
    # The original was no property at all (read as a default): restored by removing it.
    original_absent: bool = False


def _order(place: Place) -> tuple[int, str]:
    return FIELDS.index(place.field), place.setting or ""


def instance_of(document: Document) -> str | None:
    """The gateway instance's id (ARM's read-only resourceGuid), if the document has one."""
    guid = (document.get("properties") or {}).get("resourceGuid")
    return str(guid).lower() if guid else None


@dataclass(frozen=True)
class Ledger:
    gateway_id: str
    # The instance the entries were taken from; None in ledgers written before instances were
    # recorded, which the live instance adopts (nothing tells it apart from its predecessor).
    resource_guid: str | None = None
    owned: Mapping[Place, Owned] = dataclasses.field(default_factory=dict)

    @property
    def is_empty(self) -> bool:
        return not self.owned

    def belongs_to(self, document: Document) -> bool:
        live = instance_of(document)
        return self.resource_guid is None or live is None or self.resource_guid.lower() == live

    def bound_to(self, document: Document) -> "Ledger":
        """This ledger bound to the document's instance if it belongs to it, else an empty one."""
        live = instance_of(document) or self.resource_guid
        if not self.belongs_to(document):
            return Ledger(gateway_id=self.gateway_id, resource_guid=live)
        return dataclasses.replace(self, resource_guid=live)

    def with_owned(self, owned: Mapping[Place, Owned]) -> "Ledger":
        return dataclasses.replace(
            self, owned=dict(sorted(owned.items(), key=lambda i: _order(i[0])))
        )

    # -- the stored form ----------------------------------------------------------------

    def to_data(self) -> dict[str, Any]:
        data: dict[str, Any] = {"gatewayId": self.gateway_id, "resourceGuid": self.resource_guid}
        for field in FIELDS:
            entries = {
                p.setting: {"original": o.original, "applied": o.applied}
                | ({"originalAbsent": True} if o.original_absent else {})
                for p, o in sorted(self.owned.items(), key=lambda i: _order(i[0]))
                if p.field is field
            }
            if entries or field.stored_when_empty:
                data[field.ledger_key] = entries if field.per_setting else entries.get(None)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_data(), separators=(",", ":"))

    @classmethod
    def from_data(cls, data: Any) -> "Ledger":
        """A stored ledger (keys in camelCase or snake_case); ValueError when it is not one."""
        if not isinstance(data, Mapping):
            raise ValueError("a ledger must be an object")
        data = {to_camel(str(key)): value for key, value in data.items()}
        by_key = {field.ledger_key: field for field in FIELDS}
        unknown = sorted(set(data) - {"gatewayId", "resourceGuid", *by_key})
        if unknown:
            raise ValueError(f"unknown field(s): {', '.join(unknown)}")
        gateway_id, guid = data.get("gatewayId"), data.get("resourceGuid")
        if not isinstance(gateway_id, str) or not (guid is None or isinstance(guid, str)):
            raise ValueError("gatewayId must be a string, resourceGuid a string or null")
        owned: dict[Place, Owned] = {}
        for key, field in by_key.items():
            raw = data.get(key)
            if raw is None:
                continue
            entries = raw if field.per_setting else {None: raw}
            if not isinstance(entries, Mapping):
                raise ValueError(f"{key}: must be an object")
            for setting, entry in entries.items():
                if not isinstance(entry, Mapping) or not (
                    {"original", "applied"} <= set(entry) <= {"original", "applied", *_ABSENT}
                ):
                    raise ValueError(
                        f"{key}: an entry must hold original and applied (and originalAbsent)"
                    )
                if entry.get("originalAbsent", False) is not True and "originalAbsent" in entry:
                    raise ValueError(f"{key}: originalAbsent can only be true")
                owned[field.at(setting)] = Owned(
                    field.parse(entry["original"]),
                    field.parse(entry["applied"]),
                    original_absent="originalAbsent" in entry,
                )
        return cls(gateway_id=gateway_id, resource_guid=guid).with_owned(owned)

    @classmethod
    def from_json(cls, text: str) -> "Ledger":
        return cls.from_data(json.loads(text))


def recreated(confirmed: Ledger, pending: Ledger | None, document: Document) -> bool:
    """Whether the stored ledger recorded anything for an earlier instance of the gateway."""
    return any(
        ledger is not None and not ledger.is_empty and not ledger.belongs_to(document)
        for ledger in (confirmed, pending)
    )


def recover(confirmed: Ledger, pending: Ledger | None, document: Document) -> Ledger:
    """The ledger that matches the gateway after a crash between writing `pending` (before a
    PUT) and confirming it: per place, the pending entry if its PUT landed, else the confirmed.

    A PUT landed for a place when the gateway holds the pending value (or, for a place the PUT
    restored, the original value). Either ledger, if written for another instance of the
    gateway, is discarded; the result is bound to the document's instance."""
    confirmed = confirmed.bound_to(document)
    if pending is None or not pending.belongs_to(document):
        return confirmed
    owned: dict[Place, Owned] = {}
    for place in set(confirmed.owned) | set(pending.owned):
        planned, known = pending.owned.get(place), confirmed.owned.get(place)
        value = place.read(document)
        if planned is not None and value == planned.applied:
            owned[place] = planned
        elif known is not None and not (
            planned is None and value is not None and _restored(place, known, value, document)
        ):
            owned[place] = known
    return confirmed.with_owned(owned)


def _restored(place: Place, known: Owned, value: Value, document: Document) -> bool:
    """Whether the place's `value` is what a restore of `known` leaves: its original, or that
    original as written over the applied value (draining off recorded as 0 by earlier versions
    keeps the applied seconds stored)."""
    if value == known.original:
        return True
    applied = place.field.write(document, {place.setting: known.applied})
    return value == place.as_written(applied, known.original)
