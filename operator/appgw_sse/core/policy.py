"""Which gateways routes may touch: case-insensitive globs on ARM resource ids."""

from collections.abc import Sequence
from fnmatch import fnmatchcase


def gateway_allowed(gateway_id: str, patterns: Sequence[str]) -> bool:
    """True when some pattern matches; an empty list allows nothing."""
    return any(fnmatchcase(gateway_id.lower(), pattern.lower()) for pattern in patterns)
