"""Gateway documents, long-running operations and ARM's validation rules, without HTTP."""

import base64
import copy
import hashlib
import itertools
import math
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from appgw_sse.core.contract import (
    ARM_DEFAULT_REQUEST_TIMEOUT,
    MAX_DRAIN_SECONDS,
    MAX_REQUEST_TIMEOUT_SECONDS,
    MIN_DRAIN_SECONDS,
)
from appgw_sse.core.document import is_v1_sku, split_gateway_id, to_arm_document

ConflictMode = Literal["429", "409", "supersede"]
READ_ONLY = ("etag", "provisioningState", "resourceGuid", "operationalState")
# Child collections whose items ARM gives ids and etags.
CHILD_COLLECTIONS = (
    "gatewayIPConfigurations",
    "authenticationCertificates",
    "trustedRootCertificates",
    "trustedClientCertificates",
    "sslCertificates",
    "frontendIPConfigurations",
    "frontendPorts",
    "probes",
    "backendAddressPools",
    "backendHttpSettingsCollection",
    "backendSettingsCollection",
    "httpListeners",
    "listeners",
    "sslProfiles",
    "urlPathMaps",
    "requestRoutingRules",
    "routingRules",
    "rewriteRuleSets",
    "redirectConfigurations",
    "privateLinkConfigurations",
)
# Write-only in the REST spec (ApplicationGatewaySslCertificatePropertiesFormat: "only applicable
# in PUT request"): stored, never returned.
CERTIFICATE_SECRETS = ("data", "password")
# ARM's subscription token buckets (docs: request-limits-and-throttling): (burst, refill per s).
ARM_THROTTLING: dict[str, tuple[float, float]] = {
    "reads": (250, 25),
    "writes": (200, 10),
    "deletes": (200, 10),
}
# ARM's limits on tags (docs: tag-resources#limitations), with the codes it answers.
MAX_TAGS, MAX_TAG_NAME, MAX_TAG_VALUE = 50, 512, 256
_TAG_NAME_RESERVED = re.compile(r"[<>%&\\?/\x00-\x1f\x7f]")
_IDENTITY_NAMESPACE = uuid.UUID("0b7c6b52-3f0e-4d7a-9c1e-5a2f8e4d6c10")


class ArmError(Exception):
    """An ARM error response: status, code and message in ARM's error envelope."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
        target: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.target = status, code, message, target
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message, "details": []}
        if self.target is not None:
            error["target"] = self.target
        return {"error": error}


def validate_tags(tags: Any) -> None:
    """ARM's checks of a resource's tags, made before the resource provider sees the PUT."""
    if tags is None:
        return
    if not isinstance(tags, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in tags.items()
    ):
        raise ArmError(400, "InvalidRequestContent", "The request content was invalid: tags.")
    reserved = [name for name in tags if _TAG_NAME_RESERVED.search(name)]
    if reserved:
        raise ArmError(
            400,
            "InvalidTagNameCharacters",
            f"The tag names '{', '.join(reserved)}' have reserved characters "
            "'<,>,%,&,\\,?,/' or control characters.",
        )
    long_names = [name for name in tags if len(name) > MAX_TAG_NAME]
    if long_names:
        raise ArmError(
            400,
            "InvalidTagName",
            f"Tag name too large. Following tag name '{', '.join(long_names)}' exceeded the "
            f"maximum length. Maximum allowed length for tag name - '{MAX_TAG_NAME}' characters.",
        )
    long_values = [value for value in tags.values() if len(value) > MAX_TAG_VALUE]
    if long_values:
        raise ArmError(
            400,
            "InvalidTagValueLength",
            f"Tag value too large. Following tag value '{', '.join(long_values)}' exceeded the "
            f"maximum length. Maximum allowed length for tag value - '{MAX_TAG_VALUE}' "
            "characters.",
        )
    if len(tags) > MAX_TAGS:
        raise ArmError(
            400,
            "InvalidTags",
            f"Too many tags specified. Requested tag count - '{len(tags)}'. Maximum number of "
            f"tags allowed - '{MAX_TAGS}'.",
        )


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


def _certificates(document: Any) -> list[dict[str, Any]]:
    props = document.get("properties") if isinstance(document, dict) else None
    items = props.get("sslCertificates") if isinstance(props, dict) else None
    return [item for item in items or [] if isinstance(item, dict)]


def public_view(document: dict[str, Any]) -> dict[str, Any]:
    """What ARM answers for a stored gateway: the certificates' write-only secrets left out."""
    view = copy.deepcopy(document)
    for certificate in _certificates(view):
        for key in CERTIFICATE_SECRETS:
            (certificate.get("properties") or {}).pop(key, None)
    return view


def with_stored_secrets(body: Any, existing: dict[str, Any] | None) -> Any:
    """The PUT body with each certificate that names neither `data` nor `keyVaultSecretId` given
    the secret stored under its name: GET never returns it, so a GET-modify-PUT cannot send it."""
    if existing is None:
        return body
    stored = {
        str(certificate.get("name")).lower(): certificate.get("properties") or {}
        for certificate in _certificates(existing)
    }
    merged = copy.deepcopy(body)
    for certificate in _certificates(merged):
        props = certificate.get("properties")
        if not isinstance(props, dict):
            props = certificate["properties"] = {}
        if props.get("data") or props.get("keyVaultSecretId"):
            continue
        previous = stored.get(str(certificate.get("name")).lower(), {})
        props.update({key: previous[key] for key in CERTIFICATE_SECRETS if key in previous})
    return merged


def _public_cert_data(pfx: str) -> str:
    """A stand-in for the public half of a PFX: stable for the same PFX, and reveals nothing."""
    return base64.b64encode(
        b"emulated-public-cert:" + hashlib.sha256(pfx.encode()).digest()
    ).decode()


def _user_identity(resource_id: str) -> dict[str, str]:
    """The ids Azure AD gave a user-assigned identity: fixed for the identity, whoever asks."""
    key = resource_id.lower()
    return {
        "principalId": str(uuid.uuid5(_IDENTITY_NAMESPACE, f"principal:{key}")),
        "clientId": str(uuid.uuid5(_IDENTITY_NAMESPACE, f"client:{key}")),
    }


@dataclass
class TokenBucket:
    burst: float
    per_second: float
    tokens: float
    updated: float
    lowest: float
    throttled: int = 0

    def refill(self, now: float) -> None:
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.per_second)
        self.updated = now

    def seconds_to_next(self) -> int:
        return max(1, math.ceil((1 - self.tokens) / self.per_second))


class Throttling:
    """ARM's per-subscription token buckets for reads, writes and deletes."""

    def __init__(self, limits: dict[str, tuple[float, float]], clock: Callable[[], float]) -> None:
        self.limits, self.clock = limits, clock
        self.buckets: dict[tuple[str, str], TokenBucket] = {}

    def take(self, subscription: str, kind: str) -> int:
        """Spend one token and return how many are left; 429 when there is none."""
        now = self.clock()
        burst, per_second = self.limits[kind]
        bucket = self.buckets.setdefault(
            (subscription.lower(), kind), TokenBucket(burst, per_second, burst, now, burst)
        )
        bucket.refill(now)
        if bucket.tokens < 1:
            bucket.throttled += 1
            raise ArmError(
                429,
                "SubscriptionRequestsThrottled",
                f"Too many {kind} for subscription '{subscription}': its bucket of {burst:g} "
                f"refills {per_second:g} per second. Retry after {bucket.seconds_to_next()} s.",
                {
                    "Retry-After": str(bucket.seconds_to_next()),
                    f"x-ms-ratelimit-remaining-subscription-{kind}": "0",
                },
            )
        bucket.tokens -= 1
        bucket.lowest = min(bucket.lowest, bucket.tokens)
        return math.floor(bucket.tokens)

    def settings(self) -> dict[str, dict[str, float]]:
        return {kind: {"burst": b, "perSecond": r} for kind, (b, r) in self.limits.items()}

    def report(self) -> dict[str, dict[str, dict[str, float]]]:
        """Per subscription and kind: tokens left now, the fewest ever left, and 429s given."""
        now = self.clock()
        result: dict[str, dict[str, dict[str, float]]] = {}
        for (subscription, kind), bucket in sorted(self.buckets.items()):
            bucket.refill(now)
            result.setdefault(subscription, {})[kind] = {
                "burst": bucket.burst,
                "perSecond": bucket.per_second,
                "remaining": math.floor(bucket.tokens),
                "lowest": math.floor(bucket.lowest),
                "throttled": bucket.throttled,
            }
        return result


def throttling_limits(setting: Any) -> dict[str, tuple[float, float]] | None:
    """`true` (ARM's buckets), `false`/null (off), or per kind {"burst": n, "perSecond": r}."""
    if setting is None or setting is False:
        return None
    limits = dict(ARM_THROTTLING)
    if setting is True:
        return limits
    if not isinstance(setting, dict):
        raise ValueError("throttling: true, false or {kind: {burst, perSecond}}")
    for kind, bucket in setting.items():
        if kind not in limits:
            raise ValueError(f"throttling: unknown kind {kind!r}; one of {sorted(limits)}")
        burst, per_second = float(bucket["burst"]), float(bucket["perSecond"])
        if burst < 1 or per_second <= 0:
            raise ValueError(f"throttling.{kind}: burst >= 1 and perSecond > 0")
        limits[kind] = (burst, per_second)
    return limits


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
        self.throttling: Throttling | None = None
        self._operation_ids = itertools.count(1)

    def set_throttling(self, setting: Any) -> None:
        """Model ARM's throttling (see `throttling_limits`); buckets start full."""
        limits = throttling_limits(setting)
        self.throttling = None if limits is None else Throttling(limits, self.clock)

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
        for certificate in _certificates(document):
            cert_props = certificate["properties"]
            cert_props.pop("publicCertData", None)
            if cert_props.get("data"):
                cert_props["publicCertData"] = _public_cert_data(str(cert_props["data"]))
        identity = document.get("identity")
        user_assigned = (
            identity.get("userAssignedIdentities") if isinstance(identity, dict) else None
        )
        if isinstance(user_assigned, dict):
            for resource_id in user_assigned:
                user_assigned[resource_id] = _user_identity(resource_id)
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
        validate_tags(body.get("tags"))
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
            draining = (setting.get("properties") or {}).get("connectionDraining")
            drain = draining.get("drainTimeoutInSec") if isinstance(draining, dict) else None
            if draining is not None and not (
                isinstance(drain, int)
                and not isinstance(drain, bool)
                and MIN_DRAIN_SECONDS <= drain <= MAX_DRAIN_SECONDS
            ):
                # The code is the emulator's choice: the range is ARM's (spec and docs).
                raise ArmError(
                    400,
                    "ApplicationGatewayBackendHttpSettingsInvalidConnectionDrainingTimeout",
                    f"Connection draining timeout {drain} of backend http settings "
                    f"{setting.get('name')} is invalid. It must be between {MIN_DRAIN_SECONDS} "
                    f"and {MAX_DRAIN_SECONDS} seconds.",
                )
        for index, certificate in enumerate(props.get("sslCertificates") or []):
            cert_props = certificate.get("properties") if isinstance(certificate, dict) else None
            cert_props = cert_props if isinstance(cert_props, dict) else {}
            if not (cert_props.get("data") or cert_props.get("keyVaultSecretId")):
                name = certificate.get("name") if isinstance(certificate, dict) else None
                raise ArmError(
                    400,
                    "ApplicationGatewayCertificateDataOrKeyVaultSecretIdMustBeSpecified",
                    f"SSL certificate {name} of application gateway {gateway_id} needs either "
                    "data (a base-64 PFX, with its password) or a keyVaultSecretId.",
                    target=f"properties.sslCertificates[{index}]",
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
        gateway_id = str(document.get("id", ""))
        key = resource_key(*split_gateway_id(gateway_id))
        arm = with_stored_secrets(to_arm_document(document), self.gateways.get(key))
        self.validate(gateway_id, arm)
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
            (
                op
                for op in self.operations.values()
                if op.gateway_key == key and op.status == "InProgress"
            ),
            None,
        )

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
        body = with_stored_secrets(body, existing)
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
