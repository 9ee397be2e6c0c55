"""The operator's settings, from `appgw-sse run`'s flags and environment."""

from dataclasses import dataclass, field

from appgw_sse.ports import ArmSettings


@dataclass(frozen=True)
class OperatorConfig:
    allowed_gateways: tuple[str, ...]
    namespaces: tuple[str, ...] = ()  # watched; none: the whole cluster
    ledger_namespace: str = "appgw-sse-system"  # the operator's own (POD_NAMESPACE)
    debounce: float = 2.0
    resync: float = 300.0
    dry_run: bool = False
    probe_interval: float = 60.0
    probe: bool = True
    stream_check_interval: float | None = None  # tests/emulators: replaces each route's interval
    agic: bool = True  # AGIC mode: Ingresses are read and annotated
    # This installation's name in the claim tags on gateways; "" (`run` without --owner-id):
    # derived at startup from the namespace and the cluster (running.py).
    owner_id: str = "default"
    arm: ArmSettings = field(default_factory=ArmSettings)
