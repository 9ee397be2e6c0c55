"""The gateway fields the operator owns, each defined once.

The planner, the ledger, the adapter's verification, route status, the CRD's status schema and
`appgw-sse plan` all iterate over FIELDS: owning another field is one more OwnedField here (and,
when routes ask for it, the requirement in RouteIntent and the spec).
"""

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, NamedTuple

from appgw_sse.core import document as doc
from appgw_sse.core.intent import RouteIntent

Value = int | bool
Schema = dict[str, Any]
_INTEGER = re.compile(r"-?[0-9]+")


class OwnedField(ABC):
    """One field of the gateway document: how to read and write it, what routes require of it,
    and how it is shown. Values are "at least" (`satisfies`, `settle`) or exact (the default)."""

    name: ClassVar[str]  # camelCase: the key in status, `field` in `plan -o json`
    per_setting: ClassVar[bool]  # one value per backend setting, else one per gateway
    status_schema: ClassVar[Schema]  # the CRD's schema of `status_value`
    # Where stored ledgers and `plan -o json` outcomes keep this field (default: `name`); the
    # first two fields predate this abstraction and keep their names on the wire.
    ledger_key: ClassVar[str]
    plan_key: ClassVar[str]
    # Whether stored ledgers carry the field when the operator owns none of it: the first two
    # always did; newer ones are left out then, so an older operator can still read the ledger.
    stored_when_empty: ClassVar[bool] = False
    # Why a v1 SKU gateway cannot hold what a route requires of this field (None: it can).
    unsupported_on_v1: ClassVar[str | None] = None
    # The field's key in the claim tags on the gateway (core/claims.py), short: values are
    # limited to 256 characters.
    tag_key: ClassVar[str]
    # What the field reads as where its property is absent (None: it is never absent).
    absent_value: ClassVar[Value | None] = None

    def __init_subclass__(cls) -> None:
        super().__init_subclass__()
        if "name" in cls.__dict__:  # a concrete field, not a shared base
            cls.ledger_key = cls.__dict__.get("ledger_key", cls.name)
            cls.plan_key = cls.__dict__.get("plan_key", cls.name)

    def __repr__(self) -> str:
        return self.name

    @abstractmethod
    def read(self, document: doc.Document) -> dict[str | None, Value]:
        """Every current value, by backend setting (None for a gateway-wide field)."""

    @abstractmethod
    def write(self, document: doc.Document, values: Mapping[str | None, Value]) -> dict[str, Any]:
        """A copy of the document with only these values changed."""

    def absent(self, document: doc.Document, setting: str | None) -> bool:
        """Whether the document has no property at all where this field lives (it reads as a
        default); a restore puts it back absent, in its original shape."""
        return False

    def remove(self, document: doc.Document, settings: Iterable[str | None]) -> dict[str, Any]:
        """A copy of the document without the property at these places."""
        return dict(document)

    @abstractmethod
    def required_by(self, route: RouteIntent) -> Value | None:
        """What one route requires (None: nothing)."""

    @abstractmethod
    def path(self, setting: str | None) -> str:
        """The field's JSON path in the ARM document: the drift tracker's key."""

    @abstractmethod
    def label(self, setting: str | None) -> str:
        """The path as users read it in plans, logs, Events and conditions."""

    @abstractmethod
    def describe(self, setting: str | None) -> str:
        """Plain words for messages, e.g. "notifications-http requestTimeout"."""

    @abstractmethod
    def show(self, value: Value) -> str:
        """A value in messages."""

    @abstractmethod
    def parse(self, raw: Any) -> Value:
        """A value from a stored ledger; ValueError when it is not one."""

    def combine(self, one: Value, other: Value) -> Value:
        """Two routes' requirements of the same place."""
        return one

    def satisfies(self, current: Value, required: Value) -> bool:
        return current == required

    def settle(self, original: Value, required: Value) -> Value:
        """The value to set, from the original value and what the routes require."""
        return required

    def held(self, value: Value) -> str:
        """A value as the property holds it, in change lines (`label before -> after`) of
        logs, Events, conditions and errors."""
        return str(value)

    def status_value(self, value: Value) -> Any:
        return value

    def plan_value(self, value: Value) -> Any:
        """A value in `plan -o json` (its changes and route outcomes)."""
        return value

    def tag_text(self, value: Value) -> str:
        """A value in a claim tag."""
        return str(value)

    def from_tag(self, text: str) -> Value:
        """A value from a claim tag; ValueError when it is not one."""
        if not _INTEGER.fullmatch(text):
            raise ValueError(f"{text!r} is not a number of seconds")
        return self.parse(int(text))

    def at(self, setting: str | None = None) -> "Place":
        return Place(self, setting)


class Place(NamedTuple):
    """Where one owned value lives: its field and backend setting (None: gateway-wide)."""

    field: OwnedField
    setting: str | None = None

    @property
    def label(self) -> str:
        return self.field.label(self.setting)

    @property
    def path(self) -> str:
        return self.field.path(self.setting)

    def read(self, document: doc.Document) -> Value | None:
        return self.field.read(document).get(self.setting)

    def as_written(self, document: doc.Document, value: Value) -> Value:
        """What the place reads once `value` is written into `document`, as the adapter verifies
        the write: not always `value` (draining turned off with no seconds to put back, as
        ledgers of earlier versions recorded it, keeps those stored, as ARM requires)."""
        written = self.read(self.field.write(document, {self.setting: value}))
        return value if written is None else written


class ResponseBuffering(OwnedField):
    name = "responseBuffering"
    per_setting = False
    status_schema: ClassVar[Schema] = {
        "type": "string",
        "description": "Enabled or Disabled on the gateway.",
    }
    plan_key = "response_buffering"
    stored_when_empty = True
    tag_key = "buffering"
    unsupported_on_v1 = (
        "cannot disable response buffering; upgrade to Standard_v2 or WAF_v2, or set "
        "spec.responseBuffering: Unmanaged"
    )

    def read(self, document: doc.Document) -> dict[str | None, Value]:
        return {None: doc.response_buffering_enabled(document)}

    def write(self, document: doc.Document, values: Mapping[str | None, Value]) -> dict[str, Any]:
        return doc.with_response_buffering(document, bool(values[None]))

    def required_by(self, route: RouteIntent) -> Value | None:
        return False if route.disable_buffering else None

    def path(self, setting: str | None) -> str:
        return "properties.globalConfiguration.enableResponseBuffering"

    def label(self, setting: str | None) -> str:
        return "globalConfiguration.enableResponseBuffering"

    def describe(self, setting: str | None) -> str:
        return "response buffering"

    def show(self, value: Value) -> str:
        return "enabled" if value else "disabled"

    def status_value(self, value: Value) -> Any:
        return "Enabled" if value else "Disabled"

    def tag_text(self, value: Value) -> str:
        return "on" if value else "off"

    def from_tag(self, text: str) -> Value:
        if text not in ("on", "off"):
            raise ValueError(f"{text!r} is not on or off")
        return text == "on"

    def parse(self, raw: Any) -> Value:
        if not isinstance(raw, bool):
            raise ValueError(f"{raw!r} is not true or false")
        return raw


class _SecondsPerSetting(OwnedField):
    """A number of seconds on each backend setting where more is never worse for a stream: the
    operator raises it to what routes need and never lowers it (someone may have chosen more).
    A subclass names where it lives and which requirement of a route it serves."""

    per_setting = True
    most = 86400
    property_name: ClassVar[str]  # under backendHttpSettingsCollection[].properties
    label_suffix: ClassVar[str]  # what `plan` prints after the setting
    words: ClassVar[str]  # how a message names it after the setting
    requirement: ClassVar[str]  # the RouteIntent attribute it serves

    def __init__(
        self,
        reader: Callable[[doc.Document], Mapping[str, int]],
        writer: Callable[[doc.Document, Mapping[str, int]], dict[str, Any]],
    ) -> None:
        self._reader, self._writer = reader, writer

    def read(self, document: doc.Document) -> dict[str | None, Value]:
        return {name: seconds for name, seconds in self._reader(document).items()}

    def write(self, document: doc.Document, values: Mapping[str | None, Value]) -> dict[str, Any]:
        return self._writer(document, {s: int(v) for s, v in values.items() if s is not None})

    def required_by(self, route: RouteIntent) -> Value | None:
        required: Value | None = getattr(route, self.requirement)
        return required

    def path(self, setting: str | None) -> str:
        return (
            f"properties.backendHttpSettingsCollection[{setting}].properties.{self.property_name}"
        )

    def label(self, setting: str | None) -> str:
        return f"backendHttpSettingsCollection[{setting}].{self.label_suffix}"

    def describe(self, setting: str | None) -> str:
        return f"{setting} {self.words}"

    def show(self, value: Value) -> str:
        return f"{value}s"

    def combine(self, one: Value, other: Value) -> Value:
        return max(one, other)

    def satisfies(self, current: Value, required: Value) -> bool:
        return current >= required

    def settle(self, original: Value, required: Value) -> Value:
        return max(original, required)

    def parse(self, raw: Any) -> Value:
        if isinstance(raw, bool) or not isinstance(raw, int) or not 0 <= raw <= self.most:
            raise ValueError(f"{raw!r} is not a number of seconds up to {self.most}")
        return raw


class RequestTimeout(_SecondsPerSetting):
    name = property_name = label_suffix = words = "requestTimeout"
    status_schema: ClassVar[Schema] = {"type": "integer", "description": "Seconds on the gateway."}
    ledger_key = "backendSettings"
    plan_key = "request_timeouts"
    stored_when_empty = True
    requirement = "request_timeout"
    tag_key = "timeout"


class ConnectionDraining(_SecondsPerSetting):
    """connectionDraining of a backend setting, as one number: drainTimeoutInSec while
    draining is enabled; -drainTimeoutInSec while it is disabled (ARM keeps the seconds then:
    what the portal offers when draining is turned on again, so a restore puts them back); 0
    while it is disabled with no seconds stored, or the property is absent (ledgers of earlier
    versions recorded every disabled setting as 0). Every update of the gateway ends the
    setting's open connections after that long, so more is better: "at least", like the
    request timeout; any need beats a disabled original (max)."""

    name = property_name = "connectionDraining"
    label_suffix = "connectionDraining.drainTimeoutInSec"
    words = "connection draining"
    most = 3600  # ARM's range for drainTimeoutInSec
    status_schema: ClassVar[Schema] = {
        "type": "integer",
        "description": "Seconds of connection draining on the gateway (drainTimeoutInSec); 0: "
        "draining is off.",
    }
    requirement = "drain_timeout"
    tag_key = "draining"
    absent_value = 0

    def show(self, value: Value) -> str:
        if value > 0:
            return f"{value}s"
        return f"off ({-value}s stored)" if value else "off"

    def held(self, value: Value) -> str:
        return str(value) if value > 0 else self.show(value)

    def status_value(self, value: Value) -> Any:
        return max(int(value), 0)

    def plan_value(self, value: Value) -> Any:
        return self.status_value(value)

    def parse(self, raw: Any) -> Value:
        if isinstance(raw, bool) or not isinstance(raw, int) or not -self.most <= raw <= self.most:
            raise ValueError(
                f"{raw!r} is not a number of seconds up to {self.most} (negative: draining "
                "off, with that many seconds stored)"
            )
        return raw

    def absent(self, document: doc.Document, setting: str | None) -> bool:
        return setting is not None and doc.connection_draining_absent(document, setting)

    def remove(self, document: doc.Document, settings: Iterable[str | None]) -> dict[str, Any]:
        return doc.without_connection_draining(document, {s for s in settings if s is not None})


RESPONSE_BUFFERING = ResponseBuffering()
REQUEST_TIMEOUT = RequestTimeout(doc.backend_setting_timeouts, doc.with_request_timeouts)
CONNECTION_DRAINING = ConnectionDraining(doc.backend_setting_draining, doc.with_connection_draining)
FIELDS: tuple[OwnedField, ...] = (RESPONSE_BUFFERING, REQUEST_TIMEOUT, CONNECTION_DRAINING)


def places(route: RouteIntent, field: OwnedField) -> tuple[Place, ...]:
    """The places of `field` a route depends on."""
    if field.per_setting:
        return tuple(field.at(s) for s in route.backend_settings)
    return (field.at(),)


def gateway_status(document: doc.Document, settled: Iterable[Place] = ()) -> dict[str, Any]:
    """status.gateway as the document holds it: every gateway-wide field, and the per-setting
    fields of the backend settings among the `settled` places (a route's planned outcome)."""
    status: dict[str, Any] = {"name": doc.gateway_name(document)}
    for field in FIELDS:
        if not field.per_setting:
            status[field.name] = field.status_value(field.read(document)[None])
    rows = []
    for setting in dict.fromkeys(p.setting for p in settled if p.setting is not None):
        row: dict[str, Any] = {"name": setting}
        for field in FIELDS:
            value = field.read(document).get(setting) if field.per_setting else None
            if value is not None:
                row[field.name] = field.status_value(value)
        rows.append(row)
    status["backendSettings"] = rows
    return status


def gateway_status_schema() -> Schema:
    """The CRD's schema of status.gateway."""
    per_setting = {f.name: f.status_schema for f in FIELDS if f.per_setting}
    return {
        "type": "object",
        "description": "The gateway's owned values after the last reconciliation.",
        "properties": {
            "name": {"type": "string", "description": "Gateway name."},
            **{f.name: f.status_schema for f in FIELDS if not f.per_setting},
            "backendSettings": {
                "type": "array",
                "description": "The owned values of each named backend setting.",
                "items": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string", "description": "Setting name."},
                        **per_setting,
                    },
                },
            },
            "claims": {
                "type": "array",
                "description": "The claims of other clusters' operators on the gateway (its "
                "appgw-sse.claim.<owner> tags): what each needs, which the gateway keeps.",
                "items": {
                    "type": "object",
                    "properties": {
                        "owner": {"type": "string", "description": "The other operator's id."},
                        "needs": {"type": "string", "description": "What it needs."},
                    },
                },
            },
        },
    }
