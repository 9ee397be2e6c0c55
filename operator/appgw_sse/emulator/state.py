"""Gateway documents, long-running operations and ARM's validation rules, without HTTP."""

import copy
import itertools
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from appgw_sse.core.contract import ARM_DEFAULT_REQUEST_TIMEOUT, MAX_REQUEST_TIMEOUT_SECONDS
from appgw_sse.core.document import is_v1_sku, split_gateway_id, to_arm_document

ConflictMode = Literal["429", "409", "supersede"]
READ_ONLY = ("etag", "provisioningState", "resourceGuid", "operationalState")
# Child collections whose items ARM gives ids and etags.
CHILD_COLLECTIONS = (
    "gatewayIPConfigurations", "authenticationCertificates", "trustedRootCertificates",
    "trustedClientCertificates", "sslCertificates", "frontendIPConfigurations", "frontendPorts",
    "probes", "backendAddressPools", "backendHttpSettingsCollection", "backendSettingsCollection",
    "httpListeners", "listeners", "sslProfiles", "urlPathMaps", "requestRoutingRules",
    "routingRules", "rewriteRuleSets", "redirectConfigurations", "privateLinkConfigurations",
)  # fmt: skip


class ArmError(Exception):
    """An ARM error response: status, code and message in ARM's error envelope."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": []}}


def resource_key(subscription: str, group: str, name: str) -> str:
    return f"/subscriptions/{subscription}/resourcegroups/{group}/{name}".lower()


def canonical_id(subscription: str, group: str, name: str) -> str:
    return (
        f"/subscriptions/{subscription}/resourceGroups/{group}"
        f"/providers/Microsoft.Network/applicationGateways/{name}"
    )


def _new_etag() -> str:
    return f'W/"{uuid.uuid4()}"'


@dataclass
class Operation:
    id: str
    gateway_key: str
    finishes_at: float
    previous: dict[str, Any] | None  # the document to fall back to if the operation fails
    status: str = "InProgress"
    error: dict[str, str] | None = None
    forced_outcome: tuple[str, str, str] | None = None  # (status, code, message)
    deletes: bool = False


@dataclass
class Fault:
    """An injected failure: the next `count` matching requests get it, nothing else happens."""

    method: str = "*"
    path: str = ""  # regular expression searched in the path, case-insensitive
    status: int = 500
    code: str = "InternalServerError"
    message: str = "Injected fault"
    headers: dict[str, str] = field(default_factory=dict)
    count: int = 1
    delay: float = 0.0
    # resource: the ARM request fails; poll: the operation-status request fails;
    # lro: the next PUT is accepted but its operation ends `outcome` with this code;
    # interleave: another writer's change (`patch`, merged into properties) lands first.
    target: Literal["resource", "poll", "lro", "interleave"] = "resource"
    outcome: Literal["Failed", "Canceled"] = "Failed"
    patch: dict[str, Any] = field(default_factory=dict)

    def matches(self, method: str, path: str, kind: str) -> bool:
        return (
            self.count > 0
            and self.target == kind
            and self.method in ("*", method)
            and re.search(self.path, path, re.IGNORECASE) is not None
        )


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def _references(value: Any) -> list[str]:
    """Every `{"id": ...}` reference nested in `value`."""
    if isinstance(value, dict):
        found = [value["id"]] if set(value) == {"id"} and isinstance(value["id"], str) else []
        return found + [ref for item in value.values() for ref in _references(item)]
    if isinstance(value, list):
        return [ref for item in value for ref in _references(item)]
    return []


class Emulator:
    def __init__(
        self,
        lro_seconds: float = 1.0,
        conflict_mode: ConflictMode = "429",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.lro_seconds = lro_seconds
        self.conflict_mode: ConflictMode = conflict_mode
        self.clock = clock
        self.gateways: dict[str, dict[str, Any]] = {}
        self.operations: dict[str, Operation] = {}
        self.faults: list[Fault] = []
        self._operation_ids = itertools.count(1)

    # -- documents ------------------------------------------------------------------------

    def _finalize(self, gateway_id: str, body: dict[str, Any], state: str) -> dict[str, Any]:
        """What ARM stores for a PUT body: read-only fields recomputed, children identified."""
        subscription, group, name = split_gateway_id(gateway_id)
        canonical = canonical_id(subscription, group, name)
        document = copy.deepcopy(body)
        for key in READ_ONLY:
            document.pop(key, None)
        props = document.setdefault("properties", {})
        for key in READ_ONLY:
            props.pop(key, None)
        etag = _new_etag()
        document.update(
            id=canonical, name=name, type="Microsoft.Network/applicationGateways", etag=etag
        )
        props["provisioningState"] = state
        props["resourceGuid"] = self._resource_guid(gateway_id)
        props["operationalState"] = "Running"
        for collection in CHILD_COLLECTIONS:
            for child in props.get(collection) or []:
                child["id"] = f"{canonical}/{collection}/{child.get('name')}"
                child["etag"] = etag
                child.setdefault("properties", {})["provisioningState"] = state
                for key in ("resourceGuid", "operationalState"):
                    child["properties"].pop(key, None)
        for setting in props.get("backendHttpSettingsCollection") or []:
            setting["properties"].setdefault("requestTimeout", ARM_DEFAULT_REQUEST_TIMEOUT)
        return document

    def _resource_guid(self, gateway_id: str) -> str:
        """ARM's id of a gateway instance: minted when the gateway is created (by a PUT, or a
        seed where none exists, as after a deletion), kept by every update; read-only, so a
        body's value is ignored."""
        existing = self.gateways.get(resource_key(*split_gateway_id(gateway_id)))
        return str(existing["properties"]["resourceGuid"]) if existing else str(uuid.uuid4())

    def validate(self, gateway_id: str, body: Any) -> None:
        """The checks the Network RP makes on a PUT body that the operator must survive."""
        if not isinstance(body, dict):
            raise ArmError(400, "InvalidRequestContent", "The request content was invalid.")
        props = body.get("properties")
        if not isinstance(props, dict):
            raise ArmError(400, "InvalidRequestFormat", "Cannot parse the request: properties.")
        if not body.get("location"):
            raise ArmError(400, "LocationRequired", "The location property is required.")
        if "sku" not in props:
            raise ArmError(400, "InvalidRequestFormat", "properties.sku is required.")
        for setting in props.get("backendHttpSettingsCollection") or []:
            timeout = (setting.get("properties") or {}).get("requestTimeout")
            if timeout is not None and not (
                isinstance(timeout, int) and 1 <= timeout <= MAX_REQUEST_TIMEOUT_SECONDS
            ):
                raise ArmError(
                    400,
                    "ApplicationGatewayBackendHttpSettingsInvalidRequestTimeout",
                    f"Request timeout {timeout} of backend http settings {setting.get('name')} "
                    f"is invalid. It must be between 1 and {MAX_REQUEST_TIMEOUT_SECONDS} seconds.",
                )
        if "globalConfiguration" in props and is_v1_sku(body):
            raise ArmError(
                400,
                "ApplicationGatewayFeatureCannotBeEnabledForSelectedSku",
                "Application Gateway global configuration is not supported for the selected "
                "SKU tier. Supported SKU tiers are Standard_v2, WAF_v2.",
            )
        subscription, group, name = split_gateway_id(gateway_id)
        prefix = canonical_id(subscription, group, name).lower() + "/"
        children = {
            f"{prefix}{collection}/{child.get('name')}".lower()
            for collection in CHILD_COLLECTIONS
            for child in props.get(collection) or []
        }
        for path_map in props.get("urlPathMaps") or []:
            base = f"{prefix}urlPathMaps/{path_map.get('name')}/pathRules/".lower()
            children |= {
                base + str(rule.get("name")).lower()
                for rule in (path_map.get("properties") or {}).get("pathRules") or []
            }
        for reference in _references(props):
            lowered = reference.lower()
            if lowered.startswith(prefix) and lowered not in children:
                raise ArmError(
                    400,
                    "InvalidResourceReference",
                    f"Resource {reference} referenced by resource {gateway_id} was not found.",
                )

    def seed(self, document: dict[str, Any]) -> dict[str, Any]:
        arm = to_arm_document(document)
        gateway_id = str(arm.get("id", ""))
        self.validate(gateway_id, arm)
        key = resource_key(*split_gateway_id(gateway_id))
        self.gateways[key] = self._finalize(gateway_id, arm, "Succeeded")
        return self.gateways[key]

    # -- operations -----------------------------------------------------------------------

    def advance(self) -> None:
        """Finish every operation whose time has come (lazily, on each request)."""
        now = self.clock()
        for operation in self.operations.values():
            if operation.status != "InProgress" or now < operation.finishes_at:
                continue
            document = self.gateways.get(operation.gateway_key)
            if operation.deletes:
                operation.status = "Succeeded"
                self.gateways.pop(operation.gateway_key, None)
            elif operation.forced_outcome is not None:
                status, code, message = operation.forced_outcome
                operation.status, operation.error = status, {"code": code, "message": message}
                if document is not None and operation.previous is not None:
                    restored = copy.deepcopy(operation.previous)
                    restored["etag"] = _new_etag()
                    restored["properties"]["provisioningState"] = "Failed"
                    self.gateways[operation.gateway_key] = restored
            else:
                operation.status = "Succeeded"
                if document is not None:
                    document["properties"]["provisioningState"] = "Succeeded"
                    for collection in CHILD_COLLECTIONS:
                        for child in document["properties"].get(collection) or []:
                            child["properties"]["provisioningState"] = "Succeeded"

    def in_flight(self, key: str) -> Operation | None:
        return next(
            (op for op in self.operations.values()
             if op.gateway_key == key and op.status == "InProgress"),
            None,
        )  # fmt: skip

    def put(
        self, gateway_id: str, body: Any, if_match: str | None, if_none_match: str | None
    ) -> tuple[int, dict[str, Any], Operation]:
        """Start a create/update; returns (201|200, the stored document, its operation)."""
        self.advance()
        key = resource_key(*split_gateway_id(gateway_id))
        existing = self.gateways.get(key)
        if if_match is not None and (existing is None or if_match not in ("*", existing["etag"])):
            raise ArmError(
                412,
                "PreconditionFailed",
                "The condition specified using HTTP conditional header(s) is not met. "
                "(PreconditionFailedEtagMismatch)",
            )
        if if_none_match == "*" and existing is not None:
            raise ArmError(412, "PreconditionFailed", "The resource already exists.")
        running = self.in_flight(key)
        if running is not None:
            if self.conflict_mode == "429":
                raise ArmError(
                    429,
                    "RetryableErrorDueToAnotherOperation",
                    f"Operation PutApplicationGatewayOperation (Put) on resource {gateway_id} "
                    f"is not allowed because another operation {running.id} is in progress. "
                    "Retry the request after some time.",
                    {"Retry-After": str(max(1, round(running.finishes_at - self.clock())))},
                )
            if self.conflict_mode == "409":
                raise ArmError(
                    409,
                    "AnotherOperationInProgress",
                    f"Another operation on this or dependent resource is in progress. "
                    f"Operation id {running.id}.",
                )
            running.status = "Canceled"
            running.error = {
                "code": "CanceledAndSupersededDueToAnotherOperation",
                "message": "Operation was canceled and superseded by another operation.",
            }
        self.validate(gateway_id, body)
        document = self._finalize(gateway_id, body, "Updating")
        operation = Operation(
            id=str(uuid.UUID(int=next(self._operation_ids))),
            gateway_key=key,
            finishes_at=self.clock() + self.lro_seconds,
            previous=copy.deepcopy(existing),
        )
        self.operations[operation.id] = operation
        self.gateways[key] = document
        return (200 if existing else 201), document, operation

    def delete(self, gateway_id: str) -> Operation | None:
        """Start deleting; None when there is nothing to delete (ARM answers 204)."""
        self.advance()
        key = resource_key(*split_gateway_id(gateway_id))
        document = self.gateways.get(key)
        if document is None:
            return None
        document["properties"]["provisioningState"] = "Deleting"
        operation = Operation(
            id=str(uuid.UUID(int=next(self._operation_ids))),
            gateway_key=key,
            finishes_at=self.clock() + self.lro_seconds,
            previous=None,
            deletes=True,
        )
        self.operations[operation.id] = operation
        return operation

    def interleave(self, gateway_id: str, patch: dict[str, Any]) -> None:
        """Another writer's completed update lands: merged into properties, new etag."""
        key = resource_key(*split_gateway_id(gateway_id))
        document = self.gateways.get(key)
        if document is None:
            return
        _merge(document, patch)
        document["etag"] = _new_etag()

    def take_fault(self, method: str, path: str, kind: str) -> Fault | None:
        for fault in self.faults:
            if fault.matches(method, path, kind):
                fault.count -= 1
                return fault
        return None
