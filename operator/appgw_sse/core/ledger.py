"""The ownership ledger: what the operator changed on a gateway and what it found before.

Only values recorded here are ever restored, and only while the gateway still holds the value
the operator applied, so a change someone else made later is never undone.
"""

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


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
