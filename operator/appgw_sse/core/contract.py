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
# ARM's range of backendHttpSettingsCollection[].connectionDraining.drainTimeoutInSec.
MIN_DRAIN_SECONDS: Final = 1
MAX_DRAIN_SECONDS: Final = 3600
# Docs (configuration-http-settings): how long an update lets a setting's open connections live
# when connection draining is not enabled on it.
DEFAULT_UPDATE_DRAIN_SECONDS: Final = 30

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

# ARM's naming rules. Resource ids are case-insensitive. ARM also allows non-ASCII letters in
# resource group names; these patterns do not (kube-apiserver's RE2 has no Unicode-aware \w).
SUBSCRIPTION_ID_PATTERN: Final = (
    r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$"
)
RESOURCE_GROUP_PATTERN: Final = r"^[A-Za-z0-9_().-]{0,89}[A-Za-z0-9_()-]$"  # not ending in "."
# applicationGateways and their backendHttpSettingsCollection share one rule.
ARM_NAME_PATTERN: Final = r"^[A-Za-z0-9]([A-Za-z0-9_.-]{0,78}[A-Za-z0-9_])?$"
GATEWAY_ID_PATTERN: Final = (  # the three patterns above without their anchors
    rf"(?i)^/subscriptions/{SUBSCRIPTION_ID_PATTERN[1:-1]}"
    rf"/resourceGroups/{RESOURCE_GROUP_PATTERN[1:-1]}"
    rf"/providers/Microsoft\.Network/applicationGateways/{ARM_NAME_PATTERN[1:-1]}$"
)
_GATEWAY_ID_FIXED: Final = (
    "/subscriptions//resourceGroups//providers/Microsoft.Network/applicationGateways/"
)
# The fixed segments, a GUID, the longest resource group and the longest name.
GATEWAY_ID_MAX_LENGTH: Final = len(_GATEWAY_ID_FIXED) + 36 + 90 + 80
BACKEND_SETTING_NAME_PATTERN: Final = ARM_NAME_PATTERN
BACKEND_SETTING_NAME_MAX_LENGTH: Final = 80

# Header names are RFC 9110 tokens; values are what a sender may generate (visible ASCII with
# inner spaces and tabs, no leading or trailing whitespace). Sizes are bounded because the
# headers reach every selected pod's annotations, which Kubernetes caps at 256 KiB in total.
HEADER_NAME_PATTERN: Final = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$"
HEADER_VALUE_PATTERN: Final = r"^([\x21-\x7E]([\t\x20-\x7E]*[\x21-\x7E])?)?$"
MAX_HEADERS: Final = 32
MAX_HEADER_NAME_LENGTH: Final = 128
MAX_HEADER_VALUE_LENGTH: Final = 1024

# An absolute path in visible ASCII (RFC 3986 needs non-ASCII percent-encoded).
BACKEND_PATH_PATTERN: Final = r"^/[\x21-\x7E]*$"
MAX_BACKEND_PATH_LENGTH: Final = 1024

# Kubernetes object and label syntax.
SERVICE_NAME_PATTERN: Final = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"  # DNS-1035 label
MAX_SERVICE_NAME_LENGTH: Final = 63
# A label key: an optional DNS-1123 subdomain prefix and "/", then a name. The second pattern
# bounds the parts' lengths (prefix 253, name 63).
LABEL_KEY_PATTERN: Final = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
LABEL_KEY_LENGTHS_PATTERN: Final = r"^([^/]{1,253}/)?[^/]{1,63}$"
MAX_LABEL_KEY_LENGTH: Final = 253 + 1 + 63
LABEL_VALUE_PATTERN: Final = r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$"
MAX_LABEL_VALUE_LENGTH: Final = 63
# Bounds that keep the CRD's CEL rules within the API server's cost budget.
MAX_MATCH_LABELS: Final = 32
MAX_MATCH_EXPRESSIONS: Final = 16
MAX_MATCH_VALUES: Final = 64

# spec.streamCheck: where and how often the operator listens through the gateway.
STREAM_CHECK_DEFAULT_INTERVAL: Final = "5m"
MIN_STREAM_CHECK_INTERVAL_SECONDS: Final = 60
MAX_STREAM_CHECK_INTERVAL_SECONDS: Final = 24 * 3600
MIN_STREAM_CHECK_LISTEN_SECONDS: Final = 1
MAX_STREAM_CHECK_LISTEN_SECONDS: Final = 600  # also caps the default, twice idleInterval
# An absolute http(s) URL in visible ASCII: a host part without '/', '?' or '#', then anything.
STREAM_CHECK_URL_PATTERN: Final = (
    r"^https?://[\x21\x22\x24-\x2E\x30-\x3E\x40-\x7E]+([/?#][\x21-\x7E]*)?$"
)
MAX_STREAM_CHECK_URL_LENGTH: Final = 2048
MAX_STREAM_CHECKS_AT_ONCE: Final = 10  # listens across all routes

PORT_NAME_PATTERN: Final = r"^[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$"  # IANA_SVC_NAME
DURATION_PATTERN: Final = r"^([0-9]+h)?([0-9]+m)?([0-9]+s)?$"
MAX_DURATION_LENGTH: Final = 16

# AGIC marks the gateways it owns with these tags.
AGIC_TAGS: Final = ("managed-by-k8s-ingress", "ingress-for-aks-cluster-id")
V1_SKU_TIERS: Final = frozenset({"standard", "waf"})
