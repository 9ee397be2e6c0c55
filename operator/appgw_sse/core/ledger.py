"""The ownership ledger: what the operator changed on a gateway and what it found before.

Only values recorded here are ever restored, and only while the gateway still holds the value
the operator applied, so a change someone else made later is never undone.

A ledger belongs to one instance of its gateway (ARM's `properties.resourceGuid`): a gateway
deleted and created again under the same id is a new instance, whose values an older ledger
knows nothing about, so that ledger is discarded and the original values are read afresh.
"""

from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

if TYPE_CHECKING:
    from appgw_sse.core.document import Document


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


class OwnedBuffering(_Model):
    original: bool
    applied: bool


class OwnedTimeout(_Model):
    original: int
    applied: int


def instance_of(document: "Document") -> str | None:
    """The gateway instance's id (ARM's read-only resourceGuid), if the document has one."""
    guid = (document.get("properties") or {}).get("resourceGuid")
    return str(guid).lower() if guid else None


class Ledger(_Model):
    gateway_id: str
    # The instance the entries were taken from; None in ledgers written before instances were
    # recorded, which the live instance adopts (nothing tells it apart from its predecessor).
    resource_guid: str | None = None
    response_buffering: OwnedBuffering | None = None
    backend_settings: dict[str, OwnedTimeout] = Field(default_factory=dict)

    @property
    def is_empty(self) -> bool:
        return self.response_buffering is None and not self.backend_settings

    def belongs_to(self, document: "Document") -> bool:
        live = instance_of(document)
        return self.resource_guid is None or live is None or self.resource_guid.lower() == live

    def bound_to(self, document: "Document") -> "Ledger":
        """This ledger bound to the document's instance if it belongs to it, else an empty one."""
        live = instance_of(document) or self.resource_guid
        if not self.belongs_to(document):
            return Ledger(gateway_id=self.gateway_id, resource_guid=live)
        return self.model_copy(update={"resource_guid": live})


def recreated(confirmed: Ledger, intent: Ledger | None, document: "Document") -> bool:
    """Whether the stored ledger recorded anything for an earlier instance of the gateway."""
    return any(
        ledger is not None and not ledger.is_empty and not ledger.belongs_to(document)
        for ledger in (confirmed, intent)
    )


def recover(confirmed: Ledger, intent: Ledger | None, document: "Document") -> Ledger:
    """The ledger that matches the gateway after a crash between writing `intent` and
    confirming it: per field, the intent's entry if its PUT landed, else the confirmed one.

    A PUT landed for a field when the gateway holds the intent's value (or, for a field the
    intent restored, the original value). Either ledger, if written for another instance of the
    gateway, is discarded; the result is bound to the document's instance."""
    confirmed = confirmed.bound_to(document)
    if intent is None or not intent.belongs_to(document):
        return confirmed
    from appgw_sse.core.document import backend_setting_timeouts, response_buffering_enabled

    timeouts = backend_setting_timeouts(document)
    settings: dict[str, OwnedTimeout] = {}
    for name in sorted(set(confirmed.backend_settings) | set(intent.backend_settings)):
        planned, known = intent.backend_settings.get(name), confirmed.backend_settings.get(name)
        if planned is not None and timeouts.get(name) == planned.applied:
            settings[name] = planned
        elif known is not None and not (planned is None and timeouts.get(name) == known.original):
            settings[name] = known
    buffering = confirmed.response_buffering
    enabled = response_buffering_enabled(document)
    if intent.response_buffering is not None and enabled == intent.response_buffering.applied:
        buffering = intent.response_buffering
    elif (
        intent.response_buffering is None
        and buffering is not None
        and enabled == buffering.original
    ):
        buffering = None
    return confirmed.model_copy(
        update={"response_buffering": buffering, "backend_settings": settings}
    )
