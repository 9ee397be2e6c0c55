"""The one pydantic base of the camelCase wire models (the SseRoute spec and status, conditions)."""

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class CamelModel(BaseModel):
    """Frozen, camelCase on the wire, snake_case in Python (either accepted when parsing)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)
