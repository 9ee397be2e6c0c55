"""Limits and defaults of the SseRoute v1alpha1 contract: the single source for code and CRD."""

from types import MappingProxyType
from typing import Final

API_GROUP: Final = "sse.appgw.dev"
API_VERSION: Final = "v1alpha1"
KIND: Final = "SseRoute"
PLURAL: Final = "sseroutes"
FINALIZER: Final = f"{API_GROUP}/finalizer"

MIN_IDLE_SECONDS: Final = 1
IDLE_LIMIT_SECONDS: Final = 24 * 3600  # exclusive upper bound of idleInterval
MAX_REQUEST_TIMEOUT_SECONDS: Final = 86400  # ARM's range for requestTimeout is 1..86400
ARM_DEFAULT_REQUEST_TIMEOUT: Final = 30  # what ARM assumes when a setting omits the field
MIN_HEADROOM_SECONDS: Final = 5
HEADROOM_FACTOR: Final = 1.5
MAX_BACKEND_SETTINGS: Final = 50

# Application Gateway's HTTP/2 frontend idle timeout is fixed at 180 s; leave room for jitter.
HTTP2_SAFE_IDLE_SECONDS: Final = 170
# Practical cap of requestTimeout towards an internet-facing backend.
EXTERNAL_BACKEND_TIMEOUT_CAP: Final = 240

RESPONSE_BUFFERING_DISABLED: Final = "Disabled"
RESPONSE_BUFFERING_UNMANAGED: Final = "Unmanaged"
RESPONSE_BUFFERING_MODES: Final = (RESPONSE_BUFFERING_DISABLED, RESPONSE_BUFFERING_UNMANAGED)

DEFAULT_HEADERS: Final = MappingProxyType(
    {
        "Content-Type": "text/event-stream",
        "Cache-Control": "no-cache",
        "Connection": "keep-alive",
        "Transfer-Encoding": "chunked",
    }
)
DEFAULT_BACKEND_PATH: Final = "/"
DEFAULT_RESTORE_ON_DELETE: Final = True

# ARM resource ids are case-insensitive; the names follow ARM's naming rules loosely.
GATEWAY_ID_PATTERN: Final = (
    r"(?i)^/subscriptions/[^/]+/resourceGroups/[^/]+"
    r"/providers/Microsoft\.Network/applicationGateways/[^/]+$"
)
BACKEND_SETTING_NAME_PATTERN: Final = r"^[A-Za-z0-9]([A-Za-z0-9_.-]{0,78}[A-Za-z0-9_])?$"
HEADER_NAME_PATTERN: Final = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$"
PORT_NAME_PATTERN: Final = r"^[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$"  # IANA_SVC_NAME
DURATION_PATTERN: Final = r"^([0-9]+h)?([0-9]+m)?([0-9]+s)?$"

# AGIC marks the gateways it owns with these tags.
AGIC_TAGS: Final = ("managed-by-k8s-ingress", "ingress-for-aks-cluster-id")
V1_SKU_TIERS: Final = frozenset({"standard", "waf"})
