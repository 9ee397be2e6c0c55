"""The SseRoute CustomResourceDefinition, built from the contract's constants.

crds/sseroutes.sse.appgw.dev.yaml is this function's output (`appgw-sse crd`); a test keeps the
two identical, so defaults and limits are written once, in core/contract.py.
"""

from typing import Any

from appgw_sse.core import contract as c
from appgw_sse.core.fields import gateway_status_schema

Schema = dict[str, Any]


def _duration(description: str) -> Schema:
    return {
        "type": "string",
        "pattern": c.DURATION_PATTERN,
        "minLength": 2,
        "maxLength": c.MAX_DURATION_LENGTH,
        "description": description,
    }


def _cel_string(text: str) -> str:
    """`text` as a CEL string literal (regular expressions carry backslashes)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _rule(rule: str, message: str, field_path: str | None = None) -> Schema:
    result: Schema = {"rule": rule, "message": message}
    if field_path:
        result["fieldPath"] = field_path
    return result


_LABEL_KEY_RULE = (
    f"size(k) <= {c.MAX_LABEL_KEY_LENGTH} && k.matches({_cel_string(c.LABEL_KEY_PATTERN)}) && "
    f"k.matches({_cel_string(c.LABEL_KEY_LENGTHS_PATTERN)})"
)
_LABEL_KEY_MESSAGE = (
    "label keys are an optional DNS subdomain prefix (up to 253 characters) and '/', then a "
    "name of up to 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
)
_LABEL_VALUE: Schema = {
    "type": "string",
    "maxLength": c.MAX_LABEL_VALUE_LENGTH,
    "pattern": c.LABEL_VALUE_PATTERN,
}

_LABEL_SELECTOR: Schema = {
    "type": "object",
    "description": "A label selector over pods in the route's namespace (metav1.LabelSelector). "
    "At least one of matchLabels or matchExpressions must be set.",
    "properties": {
        "matchLabels": {
            "type": "object",
            "description": f"Labels a pod must carry, all of them (at most {c.MAX_MATCH_LABELS}).",
            "maxProperties": c.MAX_MATCH_LABELS,
            "additionalProperties": _LABEL_VALUE,
            "x-kubernetes-validations": [
                _rule(f"self.all(k, {_LABEL_KEY_RULE})", _LABEL_KEY_MESSAGE),
            ],
        },
        "matchExpressions": {
            "type": "array",
            "description": "Set-based requirements, all of which a pod must satisfy (at most "
            f"{c.MAX_MATCH_EXPRESSIONS}).",
            "maxItems": c.MAX_MATCH_EXPRESSIONS,
            "items": {
                "type": "object",
                "description": "One requirement: key, operator and values.",
                "required": ["key", "operator"],
                "properties": {
                    "key": {
                        "type": "string",
                        "maxLength": c.MAX_LABEL_KEY_LENGTH,
                        "pattern": c.LABEL_KEY_PATTERN,
                        "description": "The label key.",
                        "x-kubernetes-validations": [
                            _rule(
                                f"self.matches({_cel_string(c.LABEL_KEY_LENGTHS_PATTERN)})",
                                _LABEL_KEY_MESSAGE,
                            )
                        ],
                    },
                    "operator": {
                        "type": "string",
                        "enum": ["In", "NotIn", "Exists", "DoesNotExist"],
                        "description": "How the key relates to the values.",
                    },
                    "values": {
                        "type": "array",
                        "maxItems": c.MAX_MATCH_VALUES,
                        "items": _LABEL_VALUE,
                        "description": "Non-empty for In and NotIn, empty for Exists and "
                        f"DoesNotExist; at most {c.MAX_MATCH_VALUES} label values.",
                    },
                },
                "x-kubernetes-validations": [
                    _rule(
                        "(self.operator in ['In', 'NotIn']) == "
                        "(has(self.values) && size(self.values) > 0)",
                        "values must be non-empty for In and NotIn and empty for Exists and "
                        "DoesNotExist",
                    )
                ],
            },
        },
    },
    "x-kubernetes-validations": [
        _rule(
            "(has(self.matchLabels) && size(self.matchLabels) > 0) || "
            "(has(self.matchExpressions) && size(self.matchExpressions) > 0)",
            "selector must set matchLabels or matchExpressions: an empty selector would select "
            "every pod in the namespace",
        )
    ],
}

_SPEC: Schema = {
    "type": "object",
    "description": "How a Server-Sent Events route through an Azure Application Gateway must be "
    "configured.",
    "required": ["gateway", "idleInterval"],
    "properties": {
        "gateway": {
            "type": "object",
            "description": "The Application Gateway and the backend settings the stream uses.",
            "required": ["id", "backendSettings"],
            "properties": {
                "id": {
                    "type": "string",
                    "maxLength": c.GATEWAY_ID_MAX_LENGTH,
                    "pattern": c.GATEWAY_ID_PATTERN,
                    "description": "ARM resource id of the gateway: /subscriptions/<sub>/"
                    "resourceGroups/<rg>/providers/Microsoft.Network/applicationGateways/<name> "
                    "(case-insensitive, like every ARM id). The subscription is a GUID; the "
                    "resource group 1 to 90 ASCII letters, digits, '_', '(', ')', '-' or '.', "
                    "not ending in '.'; the name 1 to 80 letters, digits, '_', '.' or '-', "
                    "starting with a letter or digit and ending with a letter, digit or '_'.",
                },
                "backendSettings": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": c.MAX_BACKEND_SETTINGS,
                    "x-kubernetes-list-type": "set",
                    "description": "Names in the gateway's backendHttpSettingsCollection that "
                    "carry the stream; each gets a requestTimeout long enough for it. "
                    f"1 to {c.MAX_BACKEND_SETTINGS} unique names.",
                    "items": {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": c.BACKEND_SETTING_NAME_MAX_LENGTH,
                        "pattern": c.BACKEND_SETTING_NAME_PATTERN,
                    },
                },
            },
        },
        "idleInterval": {
            **_duration(
                "The longest silence on the stream: between two events or heartbeat comments. "
                "Whole seconds, Go style ('30s', '2m', '1h30m'); at least 1s, less than 24h. "
                "The backend settings' requestTimeout is derived from it as "
                "max(idle + 5s, ceil(1.5 * idle)), capped at 86400s."
            ),
            "x-kubernetes-validations": [
                _rule(
                    "duration(self) >= duration('1s') && duration(self) < duration('24h')",
                    "idleInterval must be at least 1s and less than 24h",
                )
            ],
        },
        "requestTimeout": {
            **_duration(
                "Overrides the derived request timeout. Must be longer than idleInterval and at "
                "most 86400s. The operator never lowers a timeout below the value it found."
            ),
            "x-kubernetes-validations": [
                _rule(
                    f"duration(self) <= duration('{c.MAX_REQUEST_TIMEOUT_SECONDS}s')",
                    f"requestTimeout must be at most {c.MAX_REQUEST_TIMEOUT_SECONDS}s",
                )
            ],
        },
        "drainTimeout": {
            **_duration(
                "Connection draining for the backend settings: every update of the gateway, by "
                "anyone, ends their open streams after this long (Azure: 30s when draining is "
                "off). The operator enables draining with at least this drainTimeoutInSec, never "
                "lowers a longer one, and puts back what it found on delete. 1s to 1h. On a "
                "gateway AGIC manages it sets the Ingress annotations connection-draining and "
                "connection-draining-timeout instead."
            ),
            "x-kubernetes-validations": [
                _rule(
                    f"duration(self) >= duration('{c.MIN_DRAIN_SECONDS}s') && "
                    f"duration(self) <= duration('{c.MAX_DRAIN_SECONDS}s')",
                    "drainTimeout must be from 1s to 1h",
                )
            ],
        },
        "responseBuffering": {
            "type": "string",
            "enum": list(c.RESPONSE_BUFFERING_MODES),
            "default": c.RESPONSE_BUFFERING_DISABLED,
            "description": "Disabled: the operator turns the gateway-wide response buffering "
            "off (needed for streaming). Unmanaged: the operator never touches it.",
        },
        "backend": {
            "type": "object",
            "description": "The pods that serve the stream, in the route's namespace. Set "
            "exactly one of serviceName or selector.",
            "properties": {
                "serviceName": {
                    "type": "string",
                    "maxLength": c.MAX_SERVICE_NAME_LENGTH,
                    "pattern": c.SERVICE_NAME_PATTERN,
                    "description": "A Service in the route's namespace whose selector picks the "
                    "pods.",
                },
                "selector": _LABEL_SELECTOR,
                "port": {
                    "x-kubernetes-int-or-string": True,
                    "description": "Container port number or name used to probe the pods' "
                    "response headers. Probing is off when unset.",
                    "x-kubernetes-validations": [
                        _rule(
                            "type(self) == int ? (self >= 1 && self <= 65535) : "
                            f"self.matches('{c.PORT_NAME_PATTERN}')",
                            "port must be a number from 1 to 65535 or a container port name",
                        )
                    ],
                },
                "path": {
                    "type": "string",
                    "maxLength": c.MAX_BACKEND_PATH_LENGTH,
                    "pattern": c.BACKEND_PATH_PATTERN,
                    "default": c.DEFAULT_BACKEND_PATH,
                    "description": "HTTP path of the event stream, used to probe: starts with "
                    "'/', visible ASCII only (no whitespace or control characters; "
                    "percent-encode anything else).",
                },
            },
            "x-kubernetes-validations": [
                _rule(
                    "has(self.serviceName) != has(self.selector)",
                    "backend must set exactly one of serviceName or selector",
                )
            ],
        },
        "headers": {
            "type": "object",
            "maxProperties": c.MAX_HEADERS,
            "additionalProperties": {
                "type": "string",
                "maxLength": c.MAX_HEADER_VALUE_LENGTH,
                "pattern": c.HEADER_VALUE_PATTERN,
            },
            "default": dict(c.DEFAULT_HEADERS),
            "description": "The response headers the backend must send, published to its pods "
            "as the annotation sse.appgw.dev/response-headers. Default: the four headers Azure "
            f"recommends for SSE. At most {c.MAX_HEADERS} headers; names are HTTP tokens of at "
            f"most {c.MAX_HEADER_NAME_LENGTH} characters, values at most "
            f"{c.MAX_HEADER_VALUE_LENGTH} characters of visible ASCII with inner spaces or tabs "
            "(no control characters such as CR, LF or NUL).",
            "x-kubernetes-validations": [
                _rule(
                    f"self.all(name, size(name) <= {c.MAX_HEADER_NAME_LENGTH} && "
                    f"name.matches({_cel_string(c.HEADER_NAME_PATTERN)}))",
                    f"header names must be HTTP tokens (RFC 9110) of at most "
                    f"{c.MAX_HEADER_NAME_LENGTH} characters",
                )
            ],
        },
        "restoreOnDelete": {
            "type": "boolean",
            "default": c.DEFAULT_RESTORE_ON_DELETE,
            "description": "On deletion, put back the values the operator changed when no other "
            "route needs them and nobody changed them since.",
        },
        "streamCheck": {
            "type": "object",
            "description": "Optional: the operator listens to the stream through the gateway as "
            "clients do (as `appgw-sse doctor` does), every interval, and reports the verdict "
            "in the advisory condition StreamVerified (not part of Ready): Live, or why not "
            "(Buffered, Cut, Compressed, Unreachable, NoResponse, HttpError, NotEventStream, "
            "Silent), with the evidence as its message and an Event when it changes. It catches "
            "what the gateway's settings cannot show: a WAF, CDN or proxy in front that "
            "buffers, the app's compression, heartbeats slower than a timeout.",
            "required": ["url"],
            "properties": {
                "url": {
                    "type": "string",
                    "maxLength": c.MAX_STREAM_CHECK_URL_LENGTH,
                    "pattern": c.STREAM_CHECK_URL_PATTERN,
                    "description": "The stream's URL as clients open it, through the gateway "
                    "(http:// or https://, visible ASCII; percent-encode anything else). It "
                    "must be reachable from the operator's pod and need no credentials.",
                },
                "interval": {
                    **_duration(
                        "How often to check, from the start of one check to the start of the "
                        "next. Go style ('5m', '1h'); from 1m to 24h; default 5m."
                    ),
                    "default": c.STREAM_CHECK_DEFAULT_INTERVAL,
                    "x-kubernetes-validations": [
                        _rule(
                            f"duration(self) >= duration("
                            f"'{c.MIN_STREAM_CHECK_INTERVAL_SECONDS}s') && duration(self) <= "
                            f"duration('{c.MAX_STREAM_CHECK_INTERVAL_SECONDS}s')",
                            "streamCheck.interval must be from 1m to 24h",
                        )
                    ],
                },
                "listen": {
                    **_duration(
                        "How long each check listens. Default: twice idleInterval, at most 10m, so a live "
                        "stream shows at least one whole silence. From 1s to 10m."
                    ),
                    "x-kubernetes-validations": [
                        _rule(
                            f"duration(self) >= duration('{c.MIN_STREAM_CHECK_LISTEN_SECONDS}s') && "
                            f"duration(self) <= duration('{c.MAX_STREAM_CHECK_LISTEN_SECONDS}s')",
                            "streamCheck.listen must be from 1s to 10m",
                        )
                    ],
                },
            },
        },
    },
    "x-kubernetes-validations": [
        _rule(
            "!has(self.requestTimeout) || "
            "duration(self.requestTimeout) > duration(self.idleInterval)",
            "requestTimeout must be longer than idleInterval",
            ".requestTimeout",
        )
    ],
}

_CONDITION: Schema = {
    "type": "object",
    "description": "A metav1.Condition.",
    "required": ["type", "status", "reason", "lastTransitionTime"],
    "properties": {
        "type": {
            "type": "string",
            "description": "Accepted, GatewayConfigured, BackendsAnnotated, BackendsConformant, "
            "StreamVerified, Ready, Reconciling or Stalled.",
        },
        "status": {
            "type": "string",
            "enum": ["True", "False", "Unknown"],
            "description": "Whether the condition holds.",
        },
        "reason": {"type": "string", "description": "CamelCase cause, e.g. Applied."},
        "message": {"type": "string", "description": "Human-readable detail."},
        "observedGeneration": {
            "type": "integer",
            "format": "int64",
            "description": "The generation the condition was set for.",
        },
        "lastTransitionTime": {
            "type": "string",
            "format": "date-time",
            "description": "When status last changed.",
        },
    },
}

_STATUS: Schema = {
    "type": "object",
    "description": "What the operator observed and did.",
    # A route the operator has not written yet reads as observedGeneration 0, so kstatus (Flux's
    # health check) sees it as in progress: without any status it would call it Current.
    "default": {"observedGeneration": 0},
    "properties": {
        "observedGeneration": {
            "type": "integer",
            "format": "int64",
            "description": "The generation the conditions speak for (0: not reconciled yet).",
        },
        "requestTimeoutSeconds": {
            "type": "integer",
            "description": "The request timeout this route requires.",
        },
        "mode": {
            "type": "string",
            "description": "Gateway: the operator writes the gateway. AGIC: AGIC manages the "
            "gateway, so the operator never writes it and sets AGIC's annotations "
            "(appgw.ingress.kubernetes.io/request-timeout, connection-draining, "
            "connection-draining-timeout) on the Ingresses that route to spec.backend."
            "serviceName instead.",
        },
        "ingresses": {
            "type": "array",
            "items": {"type": "string"},
            "description": "AGIC mode: the Ingresses in the route's namespace carrying its values.",
        },
        "gateway": gateway_status_schema(),
        "backends": {
            "type": "object",
            "description": "Pods selected by spec.backend.",
            "properties": {
                "selected": {"type": "integer", "description": "Pods selected."},
                "annotated": {"type": "integer", "description": "Pods carrying the annotations."},
                "conformant": {
                    "type": "integer",
                    "description": "Pods whose last probe matched the headers.",
                },
            },
        },
        "conditions": {
            "type": "array",
            "description": "Accepted, GatewayConfigured, BackendsAnnotated, Ready (True when the "
            "gateway holds what this generation needs), and, derived from Ready for kstatus "
            "(Flux's health check), Reconciling (True while the work is in progress or retried) "
            "and Stalled (True when it will not progress until the route, the gateway or the "
            "operator's settings change: InvalidSpec, GatewayNotAllowed, GatewayNotFound, "
            "BackendSettingsNotFound, UnsupportedSku, ManagedByAGIC, DriftConflict, DryRun, "
            "ResponseBufferingEnabled); advisory: BackendsConformant (spec.backend.port) and "
            "StreamVerified (spec.streamCheck).",
            "items": _CONDITION,
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
        },
    },
}

_READY = '.status.conditions[?(@.type=="Ready")]'


def build_crd() -> Schema:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{c.PLURAL}.{c.API_GROUP}"},
        "spec": {
            "group": c.API_GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": c.KIND,
                "listKind": f"{c.KIND}List",
                "plural": c.PLURAL,
                "singular": "sseroute",
                "shortNames": ["sser"],
                "categories": ["appgw"],
            },
            "versions": [
                {
                    "name": c.API_VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": "Gateway", "type": "string", "jsonPath": ".status.gateway.name"},
                        {"name": "Idle", "type": "string", "jsonPath": ".spec.idleInterval"},
                        {
                            "name": "Timeout",
                            "type": "integer",
                            "jsonPath": ".status.requestTimeoutSeconds",
                            "description": "The request timeout this route needs, in seconds "
                            "(its requestTimeout, else derived from idleInterval), not what the "
                            "gateway holds: a gateway setting may hold more (another route's "
                            "need, or the value found there); see status.gateway.backendSettings.",
                        },
                        {"name": "Ready", "type": "string", "jsonPath": f"{_READY}.status"},
                        {"name": "Reason", "type": "string", "jsonPath": f"{_READY}.reason"},
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                        # Wide only: the contract fixes the default columns.
                        {
                            "name": "Mode",
                            "type": "string",
                            "priority": 1,
                            "jsonPath": ".status.mode",
                        },
                        {
                            "name": "Message",
                            "type": "string",
                            "priority": 1,
                            "jsonPath": f"{_READY}.message",
                        },
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "SseRoute makes a Server-Sent Events stream work "
                            "through Azure Application Gateway: response buffering off, a "
                            "request timeout longer than the stream's silences, and the SSE "
                            "header contract on the backend pods.",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {
                                    "type": "string",
                                    "description": "sse.appgw.dev/v1alpha1",
                                },
                                "kind": {"type": "string", "description": "SseRoute"},
                                "metadata": {"type": "object"},
                                "spec": _SPEC,
                                "status": _STATUS,
                            },
                        }
                    },
                }
            ],
        },
    }
