"""SseRoute spec: the same rules the CRD's schema and CEL enforce, re-checked by the operator."""

import re
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from appgw_sse.core.camel import CamelModel
from appgw_sse.core.contract import (
    API_GROUP,
    API_VERSION,
    ARM_NAME_PATTERN,
    BACKEND_PATH_PATTERN,
    BACKEND_SETTING_NAME_MAX_LENGTH,
    DEFAULT_BACKEND_PATH,
    DEFAULT_HEADERS,
    DEFAULT_RESTORE_ON_DELETE,
    GATEWAY_ID_MAX_LENGTH,
    HEADER_NAME_PATTERN,
    HEADER_VALUE_PATTERN,
    IDLE_LIMIT_SECONDS,
    KIND,
    LABEL_KEY_LENGTHS_PATTERN,
    LABEL_KEY_PATTERN,
    LABEL_VALUE_PATTERN,
    MAX_BACKEND_PATH_LENGTH,
    MAX_BACKEND_SETTINGS,
    MAX_DRAIN_SECONDS,
    MAX_DURATION_LENGTH,
    MAX_HEADER_NAME_LENGTH,
    MAX_HEADER_VALUE_LENGTH,
    MAX_HEADERS,
    MAX_LABEL_KEY_LENGTH,
    MAX_LABEL_VALUE_LENGTH,
    MAX_MATCH_EXPRESSIONS,
    MAX_MATCH_LABELS,
    MAX_MATCH_VALUES,
    MAX_REQUEST_TIMEOUT_SECONDS,
    MAX_SERVICE_NAME_LENGTH,
    MAX_STREAM_CHECK_INTERVAL_SECONDS,
    MAX_STREAM_CHECK_LISTEN_SECONDS,
    MAX_STREAM_CHECK_URL_LENGTH,
    MIN_DRAIN_SECONDS,
    MIN_IDLE_SECONDS,
    MIN_STREAM_CHECK_INTERVAL_SECONDS,
    MIN_STREAM_CHECK_LISTEN_SECONDS,
    PORT_NAME_PATTERN,
    RESOURCE_GROUP_PATTERN,
    RESPONSE_BUFFERING_DISABLED,
    SERVICE_NAME_PATTERN,
    STREAM_CHECK_DEFAULT_INTERVAL,
    STREAM_CHECK_URL_PATTERN,
    SUBSCRIPTION_ID_PATTERN,
)
from appgw_sse.core.document import GATEWAY_ID_SHAPE
from appgw_sse.core.duration import derived_request_timeout, parse_duration
from appgw_sse.core.intent import RouteIntent


class _Model(CamelModel):
    model_config = ConfigDict(extra="forbid")  # merged with CamelModel's


def _quoted(text: str, limit: int = 60) -> str:
    """`text` for an error message, cut short: inputs can be megabytes."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _syntax(pattern: str, rule: str, max_length: int) -> AfterValidator:
    """A check that a string is at most `max_length` long and matches `pattern` (`rule` says
    how, for the error message)."""
    compiled = re.compile(pattern)

    def check(text: str) -> str:
        if len(text) > max_length:
            raise ValueError(f"is {len(text)} characters long; at most {max_length} allowed")
        if not compiled.fullmatch(text):
            raise ValueError(f"{_quoted(text)} {rule}")
        return text

    return AfterValidator(check)


def _check_duration(text: str) -> str:
    parse_duration(text)
    return text


Duration = Annotated[str, Field(max_length=MAX_DURATION_LENGTH), AfterValidator(_check_duration)]

_ARM_NAME_RULE = (
    "must be 1 to 80 letters, digits, '_', '.' or '-', starting with a letter or digit and "
    "ending with a letter, digit or '_'"
)
BackendSettingName = Annotated[
    str, _syntax(ARM_NAME_PATTERN, _ARM_NAME_RULE, BACKEND_SETTING_NAME_MAX_LENGTH)
]
ServiceName = Annotated[
    str,
    _syntax(
        SERVICE_NAME_PATTERN,
        "must be a Service name (DNS-1035 label): lower-case letters, digits and '-', starting "
        "with a letter and ending with a letter or digit",
        MAX_SERVICE_NAME_LENGTH,
    ),
]
BackendPath = Annotated[
    str,
    _syntax(
        BACKEND_PATH_PATTERN,
        "must start with '/' and hold only visible ASCII: no whitespace or control characters "
        "(percent-encode anything else)",
        MAX_BACKEND_PATH_LENGTH,
    ),
]
HeaderValue = Annotated[
    str,
    _syntax(
        HEADER_VALUE_PATTERN,
        "must be visible ASCII with inner spaces or tabs only: no control characters such as "
        "CR, LF or NUL and no leading or trailing whitespace",
        MAX_HEADER_VALUE_LENGTH,
    ),
]
LabelValue = Annotated[
    str,
    _syntax(
        LABEL_VALUE_PATTERN,
        "must be a label value: up to 63 letters, digits, '-', '_' or '.', starting and ending "
        "with a letter or digit",
        MAX_LABEL_VALUE_LENGTH,
    ),
]


def _label_key_problem(key: str) -> str | None:
    if (
        len(key) <= MAX_LABEL_KEY_LENGTH
        and re.fullmatch(LABEL_KEY_PATTERN, key)
        and re.fullmatch(LABEL_KEY_LENGTHS_PATTERN, key)
    ):
        return None
    return (
        f"label key {_quoted(key)} must be an optional DNS subdomain prefix (up to 253 "
        "characters) and '/', then a name of up to 63 letters, digits, '-', '_' or '.', "
        "starting and ending with a letter or digit"
    )


def _check_label_key(key: str) -> str:
    problem = _label_key_problem(key)
    if problem:
        raise ValueError(problem)
    return key


def _check_label_keys(labels: dict[str, str]) -> dict[str, str]:
    problems = [p for p in map(_label_key_problem, sorted(labels)) if p]
    if problems:
        raise ValueError("; ".join(problems[:3]))
    return labels


class LabelSelectorRequirement(_Model):
    key: Annotated[str, AfterValidator(_check_label_key)]
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: tuple[LabelValue, ...] = Field(default=(), max_length=MAX_MATCH_VALUES)

    @model_validator(mode="after")
    def _values_match_operator(self) -> Self:
        needs_values = self.operator in ("In", "NotIn")
        if needs_values and not self.values:
            raise ValueError(f"operator {self.operator} needs a non-empty values list")
        if not needs_values and self.values:
            raise ValueError(f"operator {self.operator} takes no values")
        return self


class LabelSelector(_Model):
    match_labels: Annotated[
        dict[str, LabelValue],
        Field(max_length=MAX_MATCH_LABELS),
        AfterValidator(_check_label_keys),
    ] = Field(default_factory=dict)
    match_expressions: tuple[LabelSelectorRequirement, ...] = Field(
        default=(), max_length=MAX_MATCH_EXPRESSIONS
    )

    @model_validator(mode="after")
    def _not_empty(self) -> Self:
        # An empty selector would select every pod in the namespace: never what a user means.
        if not self.match_labels and not self.match_expressions:
            raise ValueError("must set matchLabels or matchExpressions")
        return self


_GATEWAY_ID_PARTS = (
    ("subscription", SUBSCRIPTION_ID_PATTERN, "must be a GUID"),
    (
        "resource group",
        RESOURCE_GROUP_PATTERN,
        "must be 1 to 90 letters, digits, '_', '(', ')', '-' or '.', not ending in '.'",
    ),
    ("gateway name", ARM_NAME_PATTERN, _ARM_NAME_RULE),
)


def _check_gateway_id(text: str) -> str:
    """The same rule as the CRD's pattern, with an error that says which part is wrong."""
    if len(text) > GATEWAY_ID_MAX_LENGTH:
        raise ValueError(
            f"is {len(text)} characters long; an Application Gateway resource id has at most "
            f"{GATEWAY_ID_MAX_LENGTH}"
        )
    shape = GATEWAY_ID_SHAPE.fullmatch(text)
    if shape is None:
        raise ValueError(
            "must be an Application Gateway resource id: /subscriptions/<subscription GUID>"
            "/resourceGroups/<group>/providers/Microsoft.Network/applicationGateways/<name>"
        )
    for value, (part, pattern, rule) in zip(shape.groups(), _GATEWAY_ID_PARTS, strict=True):
        if not re.fullmatch(pattern, value):
            raise ValueError(f"{part} {_quoted(value)} {rule}")
    return text


def _check_port(port: int | str | None) -> int | str | None:
    if isinstance(port, int) and not 1 <= port <= 65535:
        raise ValueError("must be a port number from 1 to 65535 or a named container port")
    if isinstance(port, str) and not re.fullmatch(PORT_NAME_PATTERN, port):
        raise ValueError("must be a port number or an IANA_SVC_NAME such as 'http'")
    return port


class GatewayRef(_Model):
    id: Annotated[str, AfterValidator(_check_gateway_id)]
    backend_settings: tuple[BackendSettingName, ...] = Field(
        min_length=1, max_length=MAX_BACKEND_SETTINGS
    )

    @field_validator("backend_settings")
    @classmethod
    def _unique(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"duplicate names: {', '.join(duplicates)}")
        return names


class BackendRef(_Model):
    service_name: ServiceName | None = None
    selector: LabelSelector | None = None
    port: Annotated[StrictInt | StrictStr | None, AfterValidator(_check_port)] = Field(
        default=None, union_mode="left_to_right"
    )
    path: BackendPath = DEFAULT_BACKEND_PATH

    @model_validator(mode="after")
    def _exactly_one_selection(self) -> Self:
        if (self.service_name is None) == (self.selector is None):
            raise ValueError("set exactly one of serviceName or selector")
        return self


def _check_header_names(headers: dict[str, str]) -> dict[str, str]:
    bad = sorted(
        name
        for name in headers
        if len(name) > MAX_HEADER_NAME_LENGTH or not re.fullmatch(HEADER_NAME_PATTERN, name)
    )
    if bad:
        raise ValueError(
            f"header names must be HTTP tokens (RFC 9110) of at most {MAX_HEADER_NAME_LENGTH} "
            f"characters: {', '.join(map(_quoted, bad[:5]))}"
        )
    return headers


StreamCheckUrl = Annotated[
    str,
    _syntax(
        STREAM_CHECK_URL_PATTERN,
        "must be an absolute http:// or https:// URL with a host, in visible ASCII "
        "(percent-encode anything else)",
        MAX_STREAM_CHECK_URL_LENGTH,
    ),
]


class StreamCheck(_Model):
    """Listen through the gateway as clients do, every `interval`, for `listen`."""

    url: StreamCheckUrl
    interval: Duration = STREAM_CHECK_DEFAULT_INTERVAL
    listen: Duration | None = None  # None: twice idleInterval, at most 10m

    @field_validator("interval")
    @classmethod
    def _interval_in_range(cls, text: str) -> str:
        seconds = parse_duration(text)
        if not MIN_STREAM_CHECK_INTERVAL_SECONDS <= seconds <= MAX_STREAM_CHECK_INTERVAL_SECONDS:
            raise ValueError(f"{text!r} must be from 1m to 24h")
        return text

    @field_validator("listen")
    @classmethod
    def _listen_in_range(cls, text: str | None) -> str | None:
        if text is not None and not (
            MIN_STREAM_CHECK_LISTEN_SECONDS
            <= parse_duration(text)
            <= MAX_STREAM_CHECK_LISTEN_SECONDS
        ):
            raise ValueError(f"{text!r} must be from 1s to 10m")
        return text

    @property
    def interval_seconds(self) -> int:
        return parse_duration(self.interval)

    def listen_seconds(self, idle_seconds: int) -> int:
        """How long one check listens: `listen`, else twice the idle interval (at most 10m),
        so that a stream which is live shows at least one whole silence."""
        if self.listen is not None:
            return parse_duration(self.listen)
        return min(2 * idle_seconds, MAX_STREAM_CHECK_LISTEN_SECONDS)


class SseRouteSpec(_Model):
    gateway: GatewayRef
    idle_interval: Duration
    request_timeout: Duration | None = None
    drain_timeout: Duration | None = None
    response_buffering: Literal["Disabled", "Unmanaged"] = RESPONSE_BUFFERING_DISABLED
    backend: BackendRef | None = None
    headers: Annotated[
        dict[str, HeaderValue],
        Field(max_length=MAX_HEADERS),
        AfterValidator(_check_header_names),
    ] = Field(default_factory=lambda: dict(DEFAULT_HEADERS))
    restore_on_delete: StrictBool = DEFAULT_RESTORE_ON_DELETE
    stream_check: StreamCheck | None = None

    @field_validator("idle_interval")
    @classmethod
    def _idle_in_range(cls, text: str) -> str:
        seconds = parse_duration(text)
        if not MIN_IDLE_SECONDS <= seconds < IDLE_LIMIT_SECONDS:
            raise ValueError(f"{text!r} must be at least 1s and less than 24h")
        return text

    @field_validator("request_timeout")
    @classmethod
    def _timeout_in_range(cls, text: str | None, info: ValidationInfo) -> str | None:
        if text is None:
            return None
        seconds = parse_duration(text)
        if seconds > MAX_REQUEST_TIMEOUT_SECONDS:
            raise ValueError(f"{text!r} exceeds Application Gateway's maximum of 86400s")
        idle = info.data.get("idle_interval")  # absent when idleInterval itself was invalid
        if idle is not None and seconds <= parse_duration(idle):
            raise ValueError(
                f"{text!r} must be longer than idleInterval {idle!r}, "
                "or the gateway cuts streams during silences"
            )
        return text

    @field_validator("drain_timeout")
    @classmethod
    def _drain_in_range(cls, text: str | None) -> str | None:
        if text is not None and not (
            MIN_DRAIN_SECONDS <= parse_duration(text) <= MAX_DRAIN_SECONDS
        ):
            raise ValueError(f"{text!r} must be from 1s to 1h (drainTimeoutInSec 1..3600)")
        return text

    @property
    def idle_seconds(self) -> int:
        return parse_duration(self.idle_interval)

    @property
    def request_timeout_seconds(self) -> int:
        """The timeout this route requires: the explicit override or the derived value."""
        if self.request_timeout is not None:
            return parse_duration(self.request_timeout)
        return derived_request_timeout(self.idle_seconds)

    def intent(self, key: str) -> RouteIntent:
        """What the route `key` (namespace/name) with this spec requires of its gateway."""
        return RouteIntent(
            key=key,
            gateway_id=self.gateway.id,
            backend_settings=self.gateway.backend_settings,
            request_timeout=self.request_timeout_seconds,
            idle_seconds=self.idle_seconds,
            disable_buffering=self.response_buffering == RESPONSE_BUFFERING_DISABLED,
            drain_timeout=parse_duration(self.drain_timeout) if self.drain_timeout else None,
            backend_service=self.backend.service_name if self.backend else None,
        )


class SseRoute(BaseModel):
    """Only what the planner needs from a whole object: identity, generation and spec."""

    model_config = ConfigDict(frozen=True)

    namespace: str
    name: str
    generation: int = 0
    spec: SseRouteSpec

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


class SpecError(ValueError):
    """An invalid spec, with one human-readable line per offending field."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


def _field_path(loc: tuple[int | str, ...]) -> str:
    path = "spec"
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _problem(error: Any) -> str:
    loc = tuple(error["loc"])
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown field"
    return f"{_field_path(loc)}: {message}"


def parse_spec(raw: Any) -> SseRouteSpec:
    """Validate a raw spec mapping; SpecError names every offending field (spec.x.y: why)."""
    if not isinstance(raw, dict):
        raise SpecError(["spec: must be an object"])
    try:
        return SseRouteSpec.model_validate(raw)
    except ValidationError as exc:
        raise SpecError([_problem(error) for error in exc.errors()]) from None


def route_from_manifest(manifest: Any) -> SseRoute:
    """An SseRoute object as kubectl would apply it; SpecError names the offending fields."""
    if not isinstance(manifest, dict):
        raise SpecError(["object: must be a mapping"])
    api_version = f"{API_GROUP}/{API_VERSION}"
    problems = []
    if manifest.get("apiVersion") != api_version:
        problems.append(f"apiVersion: must be {api_version}")
    if manifest.get("kind") != KIND:
        problems.append(f"kind: must be {KIND}")
    metadata = manifest.get("metadata") or {}
    if not isinstance(metadata, dict) or not metadata.get("name"):
        problems.append("metadata.name: required")
    unknown = sorted(set(manifest) - {"apiVersion", "kind", "metadata", "spec", "status"})
    problems += [f"{field}: unknown field" for field in unknown]
    if "spec" not in manifest:
        problems.append("spec: required")
    try:
        spec = parse_spec(manifest.get("spec"))
    except SpecError as exc:
        problems += [] if "spec" not in manifest else exc.problems
    if problems:
        raise SpecError(problems)
    return SseRoute(
        namespace=str(metadata.get("namespace") or "default"),
        name=str(metadata["name"]),
        generation=int(metadata.get("generation") or 0),
        spec=spec,
    )
