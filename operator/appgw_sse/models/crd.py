"""The SseRoute CustomResourceDefinition, built from the contract's constants.

crds/sseroutes.sse.appgw.dev.yaml is this function's output (`appgw-sse crd`); a test keeps the
two identical, so defaults and limits are written once, in core/contract.py.
"""

from typing import Any

from appgw_sse.core.contract import (
    API_GROUP,
    API_VERSION,
    BACKEND_SETTING_NAME_PATTERN,
    DEFAULT_BACKEND_PATH,
    DEFAULT_HEADERS,
    DEFAULT_RESTORE_ON_DELETE,
    DURATION_PATTERN,
    GATEWAY_ID_PATTERN,
    HEADER_NAME_PATTERN,
    KIND,
    MAX_BACKEND_SETTINGS,
    MAX_REQUEST_TIMEOUT_SECONDS,
    PLURAL,
    PORT_NAME_PATTERN,
    RESPONSE_BUFFERING_DISABLED,
    RESPONSE_BUFFERING_MODES,
)

Schema = dict[str, Any]


def _duration(description: str) -> Schema:
    return {
        "type": "string",
        "pattern": DURATION_PATTERN,
        "minLength": 2,
        "description": description,
    }


def _rule(rule: str, message: str, field_path: str | None = None) -> Schema:
    result: Schema = {"rule": rule, "message": message}
    if field_path:
        result["fieldPath"] = field_path
    return result


_LABEL_SELECTOR: Schema = {
    "type": "object",
    "description": "A label selector over pods in the route's namespace (metav1.LabelSelector). "
    "At least one of matchLabels or matchExpressions must be set.",
    "properties": {
        "matchLabels": {
            "type": "object",
            "description": "Labels a pod must carry, all of them.",
            "additionalProperties": {"type": "string"},
        },
        "matchExpressions": {
            "type": "array",
            "description": "Set-based requirements, all of which a pod must satisfy.",
            "items": {
                "type": "object",
                "description": "One requirement: key, operator and values.",
                "required": ["key", "operator"],
                "properties": {
                    "key": {"type": "string", "minLength": 1, "description": "The label key."},
                    "operator": {
                        "type": "string",
                        "enum": ["In", "NotIn", "Exists", "DoesNotExist"],
                        "description": "How the key relates to the values.",
                    },
                    "values": {
                        "type": "array",
                        "items": {"type": "string"},
                        "description": "Non-empty for In and NotIn, empty for Exists and "
                        "DoesNotExist.",
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
                    "pattern": GATEWAY_ID_PATTERN,
                    "description": "ARM resource id of the gateway: /subscriptions/<sub>/"
                    "resourceGroups/<rg>/providers/Microsoft.Network/applicationGateways/<name> "
                    "(case-insensitive, like every ARM id).",
                },
                "backendSettings": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": MAX_BACKEND_SETTINGS,
                    "x-kubernetes-list-type": "set",
                    "description": "Names in the gateway's backendHttpSettingsCollection that "
                    "carry the stream; each gets a requestTimeout long enough for it. "
                    f"1 to {MAX_BACKEND_SETTINGS} unique names.",
                    "items": {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": 80,
                        "pattern": BACKEND_SETTING_NAME_PATTERN,
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
                    f"duration(self) <= duration('{MAX_REQUEST_TIMEOUT_SECONDS}s')",
                    f"requestTimeout must be at most {MAX_REQUEST_TIMEOUT_SECONDS}s",
                )
            ],
        },
        "responseBuffering": {
            "type": "string",
            "enum": list(RESPONSE_BUFFERING_MODES),
            "default": RESPONSE_BUFFERING_DISABLED,
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
                    "minLength": 1,
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
                            f"self.matches('{PORT_NAME_PATTERN}')",
                            "port must be a number from 1 to 65535 or a container port name",
                        )
                    ],
                },
                "path": {
                    "type": "string",
                    "pattern": "^/",
                    "default": DEFAULT_BACKEND_PATH,
                    "description": "HTTP path of the event stream, used to probe.",
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
            "additionalProperties": {"type": "string"},
            "default": dict(DEFAULT_HEADERS),
            "description": "The response headers the backend must send, published to its pods "
            "as the annotation sse.appgw.dev/response-headers. Default: the four headers Azure "
            "recommends for SSE.",
            "x-kubernetes-validations": [
                _rule(
                    f'self.all(name, name.matches("{HEADER_NAME_PATTERN}"))',
                    "header names must be HTTP tokens",
                )
            ],
        },
        "restoreOnDelete": {
            "type": "boolean",
            "default": DEFAULT_RESTORE_ON_DELETE,
            "description": "On deletion, put back the values the operator changed when no other "
            "route needs them and nobody changed them since.",
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
            "description": "Accepted, GatewayConfigured, "
            "BackendsAnnotated, BackendsConformant or Ready.",
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
    "properties": {
        "observedGeneration": {
            "type": "integer",
            "format": "int64",
            "description": "The generation last reconciled.",
        },
        "requestTimeoutSeconds": {
            "type": "integer",
            "description": "The request timeout this route requires.",
        },
        "gateway": {
            "type": "object",
            "description": "The gateway's owned values after the last reconciliation.",
            "properties": {
                "name": {"type": "string", "description": "Gateway name."},
                "responseBuffering": {
                    "type": "string",
                    "description": "Enabled or Disabled on the gateway.",
                },
                "backendSettings": {
                    "type": "array",
                    "description": "The request timeout of each named backend setting.",
                    "items": {
                        "type": "object",
                        "properties": {
                            "name": {"type": "string", "description": "Setting name."},
                            "requestTimeout": {
                                "type": "integer",
                                "description": "Seconds on the gateway.",
                            },
                        },
                    },
                },
            },
        },
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
            "description": "Accepted, GatewayConfigured, BackendsAnnotated and Ready.",
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
        "metadata": {"name": f"{PLURAL}.{API_GROUP}"},
        "spec": {
            "group": API_GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": "sseroute",
                "shortNames": ["sser"],
                "categories": ["appgw"],
            },
            "versions": [
                {
                    "name": API_VERSION,
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
                        },
                        {"name": "Ready", "type": "string", "jsonPath": f"{_READY}.status"},
                        {"name": "Reason", "type": "string", "jsonPath": f"{_READY}.reason"},
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
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
