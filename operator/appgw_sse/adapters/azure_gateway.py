"""The gateway port, implemented with the real azure-mgmt-network async client.

Every write is a read-modify-write of the WHOLE document (ARM has no partial update for gateway
configuration): GET a fresh copy right before the PUT, check the plan still starts from what it
saw, change only the owned fields, PUT with If-Match so another writer's change is never
overwritten, wait for the long-running operation, and verify the result.
"""

import asyncio
import io
import json
import logging
import time
from typing import Any

from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import SansIOHTTPPolicy
from azure.core.rest import AsyncHttpResponse, HttpRequest
from azure.mgmt.network.aio import NetworkManagementClient

from appgw_sse import logs, metrics
from appgw_sse.adapters.credentials import TokenFileCredential
from appgw_sse.core import claims as cl
from appgw_sse.core.conditions import Reason
from appgw_sse.core.document import name_from_id, split_gateway_id
from appgw_sse.core.planner import Plan
from appgw_sse.fence import Fence, LeadershipLost, Unfenced
from appgw_sse.ports import (
    ArmSettings,
    GatewayError,
    Snapshot,
    TerminalGatewayError,
    TransientGatewayError,
)

log = logging.getLogger(__name__)

_TERMINAL_STATUS = {400: Reason.AZURE_ERROR, 404: Reason.GATEWAY_NOT_FOUND}
_SKU_CODES = {"ApplicationGatewayFeatureCannotBeEnabledForSelectedSku"}
# Identities get fixed out of band (a role assignment takes minutes to propagate): authentication
# and authorization failures are retried, the wait doubling up to ArmSettings.auth_retry_max.
_AUTH_AWAITED = {
    401: "a token ARM accepts",
    403: "the identity's role assignment on the gateway (assignments take minutes to propagate)",
}


def _retry_after(error: HttpResponseError) -> float | None:
    headers = getattr(error.response, "headers", None) or {}
    value = headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def classify(error: Exception, gateway_id: str) -> GatewayError:
    """Map an SDK or transport failure onto a transient or terminal gateway error."""
    if isinstance(error, ClientAuthenticationError) and error.status_code is None:
        return TransientGatewayError(
            Reason.AZURE_AUTH_FAILED,
            "CredentialUnavailable",
            f"no Azure credential: {error.message}; waiting for one to become available",
        )
    if isinstance(error, HttpResponseError):
        code = str(getattr(error.error, "code", "") or "")
        message = str(getattr(error.error, "message", "") or error.reason or error)
        status = error.status_code or 0
        if status in _AUTH_AWAITED:
            return TransientGatewayError(
                Reason.AZURE_AUTH_FAILED,
                code or str(error.reason or status),
                f"ARM answered {status} for gateway {name_from_id(gateway_id)}: {message}; "
                f"waiting for {_AUTH_AWAITED[status]}",
            )
        if status == 200:  # the long-running operation itself ended Failed or Canceled
            return TransientGatewayError(Reason.AZURE_ERROR, code or "OperationFailed", message, 15)
        if status == 429:
            return TransientGatewayError(Reason.THROTTLED, code, message, _retry_after(error) or 30)
        if status in (409, 412):
            return TransientGatewayError(Reason.APPLYING, code, message, _retry_after(error) or 2)
        if status in _TERMINAL_STATUS:
            reason = Reason.UNSUPPORTED_SKU if code in _SKU_CODES else _TERMINAL_STATUS[status]
            return TerminalGatewayError(reason, code, message)
        return TransientGatewayError(Reason.AZURE_ERROR, code, message, _retry_after(error) or 15)
    if isinstance(error, ServiceRequestError | ServiceResponseError | TimeoutError | OSError):
        return TransientGatewayError(Reason.AZURE_ERROR, type(error).__name__, str(error), 15)
    raise error


class _CountRequests(SansIOHTTPPolicy[HttpRequest, AsyncHttpResponse]):
    """appgw_sse_arm_requests_total; placed after the retry policy, so each attempt and each
    poll of a long-running operation counts."""

    def on_response(
        self,
        request: PipelineRequest[HttpRequest],
        response: PipelineResponse[HttpRequest, AsyncHttpResponse],
    ) -> None:
        status = str(response.http_response.status_code)
        metrics.ARM_REQUESTS.labels(request.http_request.method, status).inc()

    def on_exception(self, request: PipelineRequest[HttpRequest]) -> None:
        metrics.ARM_REQUESTS.labels(request.http_request.method, "error").inc()


class _Fenced(SansIOHTTPPolicy[HttpRequest, AsyncHttpResponse]):
    """Every write request, each retry included, only while this process leads: checked
    immediately before it is sent."""

    def __init__(self, fence: Fence) -> None:
        self.fence = fence

    def on_request(self, request: PipelineRequest[HttpRequest]) -> None:
        if request.http_request.method not in ("GET", "HEAD"):
            self.fence.check()


def _raw_json(pipeline_response: Any, deserialized: Any, headers: Any) -> dict[str, Any]:
    return dict(pipeline_response.http_response.json())


class AzureGateways:
    """Application Gateways over ARM; one SDK client per subscription, closed by close()."""

    def __init__(self, settings: ArmSettings, fence: Fence | None = None) -> None:
        self.settings = settings
        self.fence = fence or Unfenced()
        self._clients: dict[str, NetworkManagementClient] = {}
        # Consecutive authentication/authorization failures per (gateway, method): reading may be
        # allowed while writing is not, so a successful GET must not reset a failing PUT's wait.
        self._auth_failures: dict[tuple[str, str], int] = {}
        if settings.token_file is not None:
            self._credential: Any = TokenFileCredential(settings.token_file)
        else:
            from azure.identity.aio import DefaultAzureCredential

            self._credential = DefaultAzureCredential()

    def _client(self, subscription: str) -> NetworkManagementClient:
        key = subscription.lower()
        if key not in self._clients:
            endpoint = self.settings.endpoint.rstrip("/")
            self._clients[key] = NetworkManagementClient(
                self._credential,
                subscription,
                base_url=endpoint,
                credential_scopes=[f"{endpoint}/.default"],
                connection_verify=str(self.settings.ca_bundle) if self.settings.ca_bundle else True,
                polling_interval=self.settings.polling_interval,
                retry_total=self.settings.sdk_retries,
                retry_backoff_factor=0.5,
                retry_backoff_max=30,
                per_retry_policies=[_CountRequests(), _Fenced(self.fence)],
            )
        return self._clients[key]

    def _failed(self, error: Exception, gateway_id: str, method: str) -> GatewayError:
        failure = classify(error, gateway_id)
        if failure.reason is not Reason.AZURE_AUTH_FAILED:
            return failure
        key = (gateway_id.lower(), method)
        count = self._auth_failures[key] = self._auth_failures.get(key, 0) + 1
        delay = min(self.settings.auth_retry * 2 ** (count - 1), self.settings.auth_retry_max)
        return TransientGatewayError(failure.reason, failure.code, failure.message, delay)

    def _succeeded(self, gateway_id: str, method: str) -> None:
        self._auth_failures.pop((gateway_id.lower(), method), None)

    async def close(self) -> None:
        for client in self._clients.values():
            await client.close()
        self._clients.clear()
        await self._credential.close()

    async def get(self, gateway_id: str) -> Snapshot:
        subscription, group, name = split_gateway_id(gateway_id)
        try:
            document: dict[str, Any] = await self._client(subscription).application_gateways.get(
                group, name, cls=_raw_json
            )  # type: ignore[assignment]
        except Exception as exc:
            raise self._failed(exc, gateway_id, "GET") from exc
        self._succeeded(gateway_id, "GET")
        return Snapshot(document=document, etag=str(document.get("etag", "")))

    async def wait_until_settled(self, gateway_id: str) -> Snapshot:
        """The gateway once no operation runs on it (a PUT in flight is never abandoned)."""
        deadline = asyncio.get_running_loop().time() + self.settings.lro_timeout
        while True:
            snapshot = await self.get(gateway_id)
            if snapshot.provisioning_state not in ("Updating", "Deleting"):
                return snapshot
            if asyncio.get_running_loop().time() > deadline:
                raise TransientGatewayError(
                    Reason.APPLYING,
                    "OperationStillRunning",
                    f"gateway still {snapshot.provisioning_state} after "
                    f"{self.settings.lro_timeout:.0f}s",
                    60,
                )
            log.info(
                "gateway %s (routes %s) is %s; waiting for its operation to end",
                gateway_id.rsplit("/", 1)[-1],
                logs.routes() or "none",
                snapshot.provisioning_state,
            )
            await asyncio.sleep(self.settings.polling_interval)

    async def apply(self, plan: Plan, snapshot: Snapshot | None = None) -> dict[str, Any]:
        """PUT the plan onto `snapshot`, the settled document it was planned from, or else onto a
        fresh copy of the gateway; the resulting document. If-Match on the copy's etag refuses
        the PUT (412, re-planned) when the gateway changed since, so no second read is needed."""
        fresh = snapshot or await self.wait_until_settled(plan.gateway_id)
        if not plan.holds_in(fresh.document):
            raise TransientGatewayError(
                Reason.APPLYING,
                "StalePlan",
                "the gateway changed since the plan was made; re-planning",
                0,
            )
        desired = plan.apply_to(fresh.document)
        subscription, group, name = split_gateway_id(plan.gateway_id)
        operations = self._client(subscription).application_gateways
        routes = ", ".join(sorted({r for c in plan.changes for r in c.routes})) or (
            "none (restore)" if plan.changes else "none (claims only)"
        )
        what = plan.summary or plan.claims_summary  # the claims are in the pass's own line
        self.fence.check()
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.settings.lro_timeout):
                poller = await operations.begin_create_or_update(
                    group,
                    name,
                    io.BytesIO(json.dumps(desired).encode()),
                    content_type="application/json",
                    headers={"If-Match": fresh.etag},
                    cls=_raw_json,
                )
                result: dict[str, Any] = await poller.result()  # type: ignore[assignment]
        except asyncio.CancelledError:
            log.warning(
                "gateway %s: PUT %s for routes %s interrupted after %.1fs (shutting "
                "down); its intent stays in the ledger for whoever runs next",
                name,
                what,
                routes,
                time.monotonic() - started,
            )
            raise
        except LeadershipLost:
            log.warning("gateway %s: PUT %s not sent: no longer the leader", name, what)
            raise
        except Exception as exc:
            error = self._failed(exc, plan.gateway_id, "PUT")
            self._count_put(plan.gateway_id, "failed", started)
            log.warning(
                "gateway %s: PUT %s for routes %s failed after %.1fs: %s",
                name,
                what,
                routes,
                time.monotonic() - started,
                error,
            )
            raise error from exc
        self._succeeded(plan.gateway_id, "PUT")
        self._count_put(plan.gateway_id, "applied", started)
        log.info(
            "gateway %s: PUT %s for routes %s applied in %.1fs",
            name,
            what,
            routes,
            time.monotonic() - started,
        )
        self._verify(plan, result)
        return result

    @staticmethod
    def _count_put(gateway_id: str, result: str, started: float) -> None:
        metrics.GATEWAY_PUTS.labels(gateway_id, result).inc()
        metrics.GATEWAY_UPDATE_SECONDS.observe(time.monotonic() - started)

    @staticmethod
    def _verify(plan: Plan, result: dict[str, Any]) -> None:
        if plan.claims_changed and cl.read(result)[0] != plan.claims:
            raise TransientGatewayError(
                Reason.APPLYING,
                "VerificationFailed",
                "the gateway's claim tags after the update are not those written",
                5,
            )
        for change in plan.changes:
            actual = change.place.read(result)
            if actual != change.after:
                raise TransientGatewayError(
                    Reason.APPLYING,
                    "VerificationFailed",
                    f"{change.label} is "
                    f"{'missing' if actual is None else change.field.held(actual)} after the "
                    f"update, expected {change.field.held(change.after)}",
                    5,
                )
