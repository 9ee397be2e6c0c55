"""The ownership ledger: what the operator changed on a gateway and what it found before.

Only values recorded here are ever restored, and only while the gateway still holds the value
the operator applied, so a change someone else made later is never undone.
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


class Ledger(_Model):
    gateway_id: str
    response_buffering: OwnedBuffering | None = None
    backend_settings: dict[str, OwnedTimeout] = Field(default_factory=dict)

    @property
    def is_empty(self) -> bool:
        return self.response_buffering is None and not self.backend_settings


def recover(confirmed: Ledger, intent: Ledger | None, document: "Document") -> Ledger:
    """The ledger that matches the gateway after a crash between writing `intent` and
    confirming it: per field, the intent's entry if its PUT landed, else the confirmed one.

    A PUT landed for a field when the gateway holds the intent's value (or, for a field the
    intent restored, the original value)."""
    if intent is None:
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
    return Ledger(gateway_id=confirmed.gateway_id, response_buffering=buffering,
                  backend_settings=settings)  # fmt: skip
