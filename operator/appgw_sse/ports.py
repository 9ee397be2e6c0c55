"""Ports: what the workers and the settings share with the adapters (adapters/), so that nothing
below the shell imports an adapter or its SDK (azure-mgmt-network, kubernetes, kopf). The
adapters implement these protocols and raise these errors; tests pass fakes.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from appgw_sse.core import agic
from appgw_sse.core.conditions import Reason
from appgw_sse.core.ledger import Ledger, instance_of
from appgw_sse.core.planner import Plan

PUBLIC_ARM_ENDPOINT = "https://management.azure.com"


@dataclass(frozen=True)
class ArmSettings:
    endpoint: str = PUBLIC_ARM_ENDPOINT
    ca_bundle: Path | None = None
    token_file: Path | None = None
    polling_interval: float = 5.0
    sdk_retries: int = 3  # azure-core's own retries of 429/5xx, each honouring Retry-After
    lro_timeout: float = 3600.0  # PUTs take minutes, and up to ~40 min during platform upgrades
    auth_retry: float = 5.0  # first wait after a credential, 401 or 403 failure, then doubled
    auth_retry_max: float = 60.0


@dataclass(frozen=True)
class Snapshot:
    document: dict[str, Any]
    etag: str

    @property
    def provisioning_state(self) -> str:
        return str(self.document.get("properties", {}).get("provisioningState", ""))

    @property
    def resource_guid(self) -> str | None:
        """Which instance of the gateway this is (a recreated gateway gets a new one)."""
        return instance_of(self.document)


# -- gateway errors: transient (the worker retries after `delay`) or terminal (it waits for a
# change or the next resync)


class GatewayError(Exception):
    """An Azure failure with the ARM error code and message kept for status conditions."""

    def __init__(self, reason: Reason, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}" if code else message)
        self.reason, self.code, self.message = reason, code, message


class TransientGatewayError(GatewayError):
    """Worth retrying after `delay` seconds: throttling, conflicts, outages, stale plans,
    credentials and permissions being fixed."""

    def __init__(self, reason: Reason, code: str, message: str, delay: float = 10.0) -> None:
        super().__init__(reason, code, message)
        self.delay = delay


class IngressesUnavailable(Exception):
    """The Ingresses of a namespace could not be listed (no networking API, no RBAC, an API
    server failure): AGIC-mode routes there get it as a condition, retried later."""


class TerminalGatewayError(GatewayError):
    """Retrying the same request cannot help: validation, a missing gateway."""


# -- what the workers call


class StatusPort(Protocol):
    async def patch_route_status(
        self, namespace: str, name: str, status: dict[str, Any]
    ) -> None: ...

    async def post_event(
        self, route: dict[str, Any], event_type: str, reason: str, message: str
    ) -> None: ...


class FinalizerPort(Protocol):
    async def patch_route_finalizers(
        self,
        namespace: str,
        name: str,
        finalizers: list[str],
        resource_version: str,
        drop_annotations: Sequence[str] = (),
    ) -> bool:
        """Write the route's finalizers (and remove these annotations) if it is still at
        `resource_version`; False when it changed meanwhile (the watch brings the newer
        version) or is gone."""
        ...


class PodsPort(Protocol):
    async def patch_pod_annotations(
        self, namespace: str, name: str, patch: dict[str, str | None]
    ) -> None: ...

    async def post_event(
        self, route: dict[str, Any], event_type: str, reason: str, message: str
    ) -> None: ...


class GatewayPort(Protocol):
    async def wait_until_settled(self, gateway_id: str) -> Snapshot: ...
    async def apply(self, plan: Plan, snapshot: Snapshot | None = None) -> dict[str, Any]: ...
    async def close(self) -> None: ...


class IngressPort(Protocol):
    async def list_agic_ingresses(self, namespace: str) -> list[agic.Ingress]: ...
    async def patch_ingress_annotations(
        self, namespace: str, name: str, patch: dict[str, str | None]
    ) -> None: ...
    async def load_ingress_ledger(self, namespace: str) -> agic.IngressLedger: ...
    async def save_ingress_ledger(self, ledger: agic.IngressLedger) -> None: ...


class LedgerPort(IngressPort, Protocol):
    async def post_event(
        self, route: dict[str, Any], event_type: str, reason: str, message: str
    ) -> None: ...
    async def load_ledger(self, gateway_id: str) -> tuple[Ledger, Ledger | None]: ...
    async def save_ledger(self, confirmed: Ledger, pending: Ledger | None = None) -> None: ...
    async def delete_ledger(self, gateway_id: str) -> None: ...
