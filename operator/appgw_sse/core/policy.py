"""Which gateways routes may touch: case-insensitive globs on ARM resource ids, each optionally
granted to the routes of some namespaces only (`NAMESPACE=PATTERN`, NAMESPACE a glob too), so
that on a shared gateway a cluster admin says which teams may raise its settings."""

import re
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

_NAMESPACE_GLOB = re.compile(r"[a-z0-9*?\[\]-]{1,63}")


@dataclass(frozen=True)
class GatewayRule:
    pattern: str  # glob on gateway resource ids, case-insensitive like ARM ids
    namespace: str | None = None  # glob on the route's namespace; None: every namespace

    @classmethod
    def parse(cls, text: str) -> "GatewayRule":
        """`PATTERN` or `NAMESPACE=PATTERN` (ARM ids hold no '='); ValueError naming the rule
        when it is neither."""
        namespace, sep, pattern = text.partition("=")
        if not sep:
            return cls(pattern=text)
        if not _NAMESPACE_GLOB.fullmatch(namespace) or not pattern or "=" in pattern:
            raise ValueError(
                f"{text!r} is not NAMESPACE=PATTERN: a namespace name (or glob) before '=', "
                "a gateway id glob after it"
            )
        return cls(pattern=pattern, namespace=namespace)

    def __str__(self) -> str:
        return f"{self.namespace}={self.pattern}" if self.namespace else self.pattern

    def matches_gateway(self, gateway_id: str) -> bool:
        return fnmatchcase(gateway_id.lower(), self.pattern.lower())

    def grants(self, namespace: str) -> bool:
        return self.namespace is None or fnmatchcase(namespace, self.namespace)


def parse_rules(texts: Sequence[str]) -> tuple[GatewayRule, ...]:
    return tuple(GatewayRule.parse(text) for text in texts)


def refusal(gateway_id: str, namespace: str, rules: Sequence[GatewayRule]) -> str | None:
    """Why a route in `namespace` may not use the gateway, or None when some rule allows it;
    no rule allows nothing."""
    matching = [rule for rule in rules if rule.matches_gateway(gateway_id)]
    if any(rule.grants(namespace) for rule in matching):
        return None
    if not matching:
        return (
            f"gateway {gateway_id} matches no --allowed-gateway pattern; "
            "the operator never writes it"
        )
    named = ", ".join(str(rule) for rule in matching)
    return (
        f"gateway {gateway_id} is granted only to other namespaces (--allowed-gateway {named}); "
        f"routes in namespace {namespace} may not use it"
    )
