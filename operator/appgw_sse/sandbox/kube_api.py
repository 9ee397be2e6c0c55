"""An embedded Kubernetes API, for the sandbox and for tests on machines where no real
kube-apiserver can run: KMock's server and discovery, plus a realistic object store.

Where the real API server is available (../shared/k8s), the tests and the sandbox use it; this
stand-in is what a fresh machine with only Python has. KMock 0.8 alone breaks kopf and kubectl
(no resourceVersions, watch replay, selectors or status subresource), so KMock
keeps serving discovery (/api, /apis, ...) and errors; every request for a declared resource
goes to `Store`, which behaves like kube-apiserver where clients depend on it: metadata filled
(uid, resourceVersion, generation, creationTimestamp, namespace), generateName, 409 on a stale
resourceVersion or an existing name, 422 on a failed JSON-patch test, the status subresource
isolated from the main resource, merge/strategic/JSON patches and PUT, finalizers and
deletionTimestamp, label and field selectors, lists with kind and resourceVersion, and watches
that replay only what is newer than the requested resourceVersion (application/json lines).

`KubeApi` runs it on its own thread and event loop, so tests may block (kubectl, subprocesses).
"""

import asyncio
import copy
import datetime
import itertools
import json
import re
import threading
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp.web
import attrs
import jsonpatch  # type: ignore[import-untyped]
import kmock

T = TypeVar("T")
Key = tuple[str, str | None, str]  # (resource, namespace or None, name)

_PATH = re.compile(
    r"^/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))/(?P<rest>.+?)/?$"
)


@dataclass(frozen=True)
class ResourceDef:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    status_subresource: bool = False
    singular: str = ""
    shortnames: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    columns: tuple[dict[str, Any], ...] = ()  # the CRD's additionalPrinterColumns

    @classmethod
    def from_crd(cls, crd: dict[str, Any]) -> "ResourceDef":
        spec, version = crd["spec"], crd["spec"]["versions"][0]
        names = spec["names"]
        return cls(
            spec["group"],
            version["name"],
            names["plural"],
            names["kind"],
            namespaced=spec["scope"] == "Namespaced",
            status_subresource="status" in version.get("subresources", {}),
            singular=names.get("singular", ""),
            shortnames=tuple(names.get("shortNames", ())),
            categories=tuple(names.get("categories", ())),
            columns=tuple(version.get("additionalPrinterColumns", ())),
        )

    @property
    def key(self) -> str:
        return f"{self.group}/{self.version}/{self.plural}" if self.group else f"v1/{self.plural}"

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


CORE = [
    ResourceDef("", "v1", "namespaces", "Namespace", namespaced=False, status_subresource=True),
    ResourceDef("", "v1", "pods", "Pod", status_subresource=True, shortnames=("po",)),
    ResourceDef("", "v1", "services", "Service", status_subresource=True, shortnames=("svc",)),
    ResourceDef("", "v1", "configmaps", "ConfigMap", shortnames=("cm",)),
    ResourceDef("", "v1", "events", "Event", shortnames=("ev",)),
    ResourceDef("events.k8s.io", "v1", "events", "Event"),
    ResourceDef("coordination.k8s.io", "v1", "leases", "Lease"),
    ResourceDef(
        "networking.k8s.io",
        "v1",
        "ingresses",
        "Ingress",
        status_subresource=True,
        shortnames=("ing",),
    ),
]


def _now() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _status(code: int, reason: str, message: str) -> aiohttp.web.Response:
    return aiohttp.web.json_response(
        {
            "apiVersion": "v1",
            "kind": "Status",
            "metadata": {},
            "status": "Failure",
            "code": code,
            "reason": reason,
            "message": message,
        },
        status=code,
    )


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _selector_term(term: str) -> Callable[[dict[str, str]], bool]:
    if m := re.fullmatch(r"(\S+)\s+(in|notin)\s+\((.*)\)", term):
        key, wanted, values = m[1], m[2] == "in", {v.strip() for v in m[3].split(",")}
        return lambda labels: (labels.get(key) in values) == wanted
    if m := re.fullmatch(r"(\S+?)\s*(!=|==?)\s*(\S*)", term):
        key, equal, value = m[1], m[2] != "!=", m[3]
        return lambda labels: (labels.get(key) == value) == equal
    if term.startswith("!"):
        return lambda labels: term[1:] not in labels
    return lambda labels: term in labels


def _parse_selector(text: str) -> list[Callable[[dict[str, str]], bool]]:
    """Kubernetes label-selector syntax: =, ==, !=, in, notin, key, !key."""
    return [_selector_term(t.strip()) for t in re.split(r",(?![^()]*\))", text) if t.strip()]


def json_path(obj: Any, path: str) -> Any:
    """The subset of kubectl's JSONPath that printer columns use: .a.b and [?(@.k=="v")]."""
    value = obj
    for part in re.findall(r'\.([A-Za-z0-9_-]+)|\[\?\(@\.(\w+)=="([^"]*)"\)\]', path):
        name, key, wanted = part
        if name:
            value = value.get(name) if isinstance(value, dict) else None
        else:
            matches = [v for v in value or [] if isinstance(v, dict) and v.get(key) == wanted]
            value = matches[0] if matches else None
    return value


def table(resource: "ResourceDef", objects: list[dict[str, Any]], rv: int) -> dict[str, Any]:
    """What kube-apiserver answers to Accept: ...;as=Table: printer columns evaluated."""
    columns = [{"name": "Name", "type": "string", "format": "name", "priority": 0}] + [
        {"name": c["name"], "type": c["type"], "format": "", "priority": c.get("priority", 0)}
        for c in resource.columns
    ]

    def cell(obj: dict[str, Any], column: dict[str, Any]) -> Any:
        value = json_path(obj, column["jsonPath"])
        if column["type"] == "date" and value:
            created = datetime.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(
                tzinfo=datetime.UTC
            )
            seconds = int((datetime.datetime.now(tz=datetime.UTC) - created).total_seconds())
            return f"{seconds}s" if seconds < 120 else f"{seconds // 60}m"
        return value

    rows = [
        {
            "cells": [obj["metadata"]["name"]] + [cell(obj, c) for c in resource.columns],
            "object": {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj["metadata"],
            },
        }
        for obj in objects
    ]
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": str(rv)},
        "columnDefinitions": columns,
        "rows": rows,
    }


# Field selectors the API server names differently from the field's path.
_FIELD_ALIASES = {"source": "source.component"}


def _field_value(obj: dict[str, Any], path: str) -> str:
    value: Any = obj
    path = _FIELD_ALIASES.get(path, path)
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return "" if value is None else str(value)


@dataclass
class Query:
    resource: ResourceDef
    namespace: str | None
    name: str | None
    subresource: str | None
    params: dict[str, str]

    def selects(self, obj: dict[str, Any]) -> bool:
        meta = obj.get("metadata", {})
        if self.namespace is not None and meta.get("namespace") != self.namespace:
            return False
        if self.name is not None and meta.get("name") != self.name:
            return False
        labels = meta.get("labels") or {}
        if not all(
            check(labels) for check in _parse_selector(self.params.get("labelSelector", ""))
        ):
            return False
        for term in filter(None, self.params.get("fieldSelector", "").split(",")):
            negate = "!=" in term
            path, value = re.split(r"!=|==|=", term, maxsplit=1)
            if (_field_value(obj, path) == value) == negate:
                return False
        return True


@dataclass
class Watcher:
    query: Query
    queue: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)


class Store:
    """Objects, resourceVersions, the event history for watch replay, and the request log."""

    def __init__(self, resources: list[ResourceDef]) -> None:
        self.resources = {r.key: r for r in resources}
        self.objects: dict[Key, dict[str, Any]] = {}
        self.history: list[tuple[int, str, str, dict[str, Any]]] = []  # rv, resource, type, obj
        self.watchers: list[Watcher] = []
        self.requests: list[dict[str, Any]] = []
        self._rv = itertools.count(1000)
        self.last_rv = 999

    def find(self, group: str, version: str, plural: str) -> ResourceDef | None:
        return self.resources.get(f"{group}/{version}/{plural}" if group else f"v1/{plural}")

    # -- changes --------------------------------------------------------------------------

    def _emit(self, resource: ResourceDef, kind: str, obj: dict[str, Any]) -> None:
        self.history.append((self.last_rv, resource.key, kind, copy.deepcopy(obj)))
        for watcher in self.watchers:
            if watcher.query.resource is resource and watcher.query.selects(obj):
                watcher.queue.put_nowait({"type": kind, "object": copy.deepcopy(obj)})

    def _bump(self, obj: dict[str, Any]) -> None:
        self.last_rv = next(self._rv)
        obj["metadata"]["resourceVersion"] = str(self.last_rv)

    def create(
        self, resource: ResourceDef, namespace: str | None, body: dict[str, Any]
    ) -> dict[str, Any]:
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        if not meta.get("name"):
            raise ApiError(422, "Invalid", "metadata.name: Required value")
        if resource.namespaced:
            meta["namespace"] = namespace or meta.get("namespace") or "default"
        key = (resource.key, meta.get("namespace"), meta["name"])
        if key in self.objects:
            raise ApiError(
                409, "AlreadyExists", f'{resource.plural} "{meta["name"]}" already exists'
            )
        obj["apiVersion"], obj["kind"] = resource.api_version, resource.kind
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=_now(), generation=1)
        meta.pop("deletionTimestamp", None)
        self._bump(obj)
        self.objects[key] = obj
        self._emit(resource, "ADDED", obj)
        return obj

    def get(self, query: Query) -> dict[str, Any]:
        key = (
            query.resource.key,
            query.namespace if query.resource.namespaced else None,
            str(query.name),
        )
        if key not in self.objects:
            raise ApiError(404, "NotFound", f'{query.resource.plural} "{query.name}" not found')
        return self.objects[key]

    def write(self, query: Query, new: dict[str, Any], expected_rv: str | None) -> dict[str, Any]:
        """Store `new` as the next version of the object the query names."""
        old = self.get(query)
        if expected_rv and expected_rv != old["metadata"]["resourceVersion"]:
            raise ApiError(
                409,
                "Conflict",
                "the object has been modified; please apply your "
                "changes to the latest version and try again",
            )
        resource = query.resource
        new = copy.deepcopy(new)
        if resource.status_subresource:
            if query.subresource == "status":
                new = {**old, "status": new.get("status")}  # only status changes here
            else:
                new["status"] = old.get("status")  # status is ignored on the main resource
            if new.get("status") is None:
                new.pop("status", None)
        meta = new.setdefault("metadata", {})
        for immutable in (
            "uid",
            "creationTimestamp",
            "namespace",
            "name",
            "generation",
            "deletionTimestamp",
        ):
            if immutable in old["metadata"]:
                meta[immutable] = old["metadata"][immutable]
        new["apiVersion"], new["kind"] = old["apiVersion"], old["kind"]
        spec_changed = {k: v for k, v in new.items() if k not in ("metadata", "status")} != {
            k: v for k, v in old.items() if k not in ("metadata", "status")
        }
        if spec_changed:
            meta["generation"] = int(old["metadata"].get("generation", 1)) + 1
        if new == old:
            return old  # a no-op write changes nothing, not even resourceVersion
        self._bump(new)
        key = (resource.key, old["metadata"].get("namespace"), old["metadata"]["name"])
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            del self.objects[key]
            self._emit(resource, "DELETED", new)
        else:
            self.objects[key] = new
            self._emit(resource, "MODIFIED", new)
        return new

    def delete(self, query: Query) -> dict[str, Any]:
        old = self.get(query)
        if old["metadata"].get("finalizers"):
            if old["metadata"].get("deletionTimestamp"):
                return old
            new = copy.deepcopy(old)
            new["metadata"]["deletionTimestamp"] = _now()
            new["metadata"]["deletionGracePeriodSeconds"] = 0
            self._bump(new)
            self.objects[
                (query.resource.key, old["metadata"].get("namespace"), old["metadata"]["name"])
            ] = new
            self._emit(query.resource, "MODIFIED", new)
            return new
        del self.objects[
            (query.resource.key, old["metadata"].get("namespace"), old["metadata"]["name"])
        ]
        self._bump(old)
        self._emit(query.resource, "DELETED", old)
        return old

    def listing(self, query: Query) -> list[dict[str, Any]]:
        return [
            obj
            for (res, _, _), obj in sorted(self.objects.items(), key=lambda kv: str(kv[0]))
            if res == query.resource.key and query.selects(obj)
        ]

    # -- HTTP -----------------------------------------------------------------------------

    async def handle(
        self, request: aiohttp.web.BaseRequest, query: Query
    ) -> aiohttp.web.StreamResponse:
        body = await request.read()
        self.requests.append(
            {
                "method": request.method,
                "path": request.path,
                "query": dict(request.query),
                "contentType": request.headers.get("Content-Type", ""),
                "userAgent": request.headers.get("User-Agent", ""),
                "body": body.decode(errors="replace"),
            }
        )
        try:
            if request.method == "GET" and query.params.get("watch") in ("true", "1"):
                return await self._watch(request, query)
            if "protobuf" in request.headers.get("Content-Type", ""):
                raise ApiError(415, "UnsupportedMediaType", "protobuf bodies are not served")
            result = self._dispatch(request.method, request.headers, body, query)
            wants_table = "as=Table" in request.headers.get("Accept", "")
            if wants_table and query.resource.columns and request.method == "GET":
                items = result.get("items", [result])
                result = table(query.resource, items, self.last_rv)
            self.requests[-1]["status"] = 200
            return aiohttp.web.json_response(result)
        except ApiError as exc:
            self.requests[-1]["status"] = exc.code
            return _status(exc.code, exc.reason, exc.message)

    def _dispatch(self, method: str, headers: Any, body: bytes, query: Query) -> dict[str, Any]:
        resource = query.resource
        if method == "GET" and query.name is None:
            return {
                "apiVersion": resource.api_version,
                "kind": f"{resource.kind}List",
                "metadata": {"resourceVersion": str(self.last_rv)},
                "items": self.listing(query),
            }
        if method == "GET":
            return self.get(query)
        if method == "POST" and query.name is None:
            return self.create(resource, query.namespace, json.loads(body or b"{}"))
        if method == "DELETE" and query.name is None:
            for obj in self.listing(query):
                self.delete(
                    Query(
                        resource,
                        obj["metadata"].get("namespace"),
                        obj["metadata"]["name"],
                        None,
                        {},
                    )
                )
            return {"apiVersion": "v1", "kind": "Status", "status": "Success"}
        if method == "DELETE":
            return self.delete(query)
        payload = json.loads(body or b"null")
        if method == "PUT":
            return self.write(query, payload, payload.get("metadata", {}).get("resourceVersion"))
        if method == "PATCH":
            old = self.get(query)
            content_type = headers.get("Content-Type", "").split(";")[0]
            if content_type == "application/json-patch+json":
                try:
                    new = jsonpatch.apply_patch(old, payload)
                except jsonpatch.JsonPatchTestFailed as exc:
                    raise ApiError(
                        422, "Invalid", f"the server rejected our request: {exc}"
                    ) from None
                except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
                    raise ApiError(422, "Invalid", str(exc)) from None
                return self.write(query, new, None)
            if content_type in (
                "application/merge-patch+json",
                "application/strategic-merge-patch+json",
            ):
                expected = (payload.get("metadata") or {}).get("resourceVersion")
                return self.write(query, merge_patch(old, payload), expected)
            raise ApiError(
                415,
                "UnsupportedMediaType",
                f"the body of the request was in an unknown format: {content_type}",
            )
        raise ApiError(405, "MethodNotAllowed", f"{method} is not supported")

    async def _watch(
        self, request: aiohttp.web.BaseRequest, query: Query
    ) -> aiohttp.web.StreamResponse:
        response = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        since = query.params.get("resourceVersion", "")
        # Subscribe at the moment the current state is read: nothing can fall in between.
        watcher = Watcher(query)
        if since in ("", "0"):
            backlog = [{"type": "ADDED", "object": copy.deepcopy(o)} for o in self.listing(query)]
        else:
            backlog = [
                {"type": kind, "object": copy.deepcopy(obj)}
                for rv, res, kind, obj in self.history
                if res == query.resource.key and rv > int(since) and query.selects(obj)
            ]
        self.watchers.append(watcher)
        timeout = float(query.params.get("timeoutSeconds") or 0) or None
        try:
            for event in backlog:
                await response.write(json.dumps(event).encode() + b"\n")
            async with asyncio.timeout(timeout):
                while True:
                    event = await watcher.queue.get()
                    await response.write(json.dumps(event).encode() + b"\n")
        except (TimeoutError, ConnectionResetError):
            pass
        finally:
            self.watchers.remove(watcher)
        return response


def route_path(store: Store, path: str, params: dict[str, str]) -> Query | None:
    match = _PATH.match(path)
    if match is None:
        return None
    group, version = ("", "v1") if match["core"] else (match["group"], match["version"])
    parts = match["rest"].split("/")
    namespace = None
    if parts[0] == "namespaces" and len(parts) >= 3:
        namespace, parts = parts[1], parts[2:]
    resource = store.find(group, version, parts[0])
    if resource is None:
        return None
    name = parts[1] if len(parts) > 1 else None
    subresource = parts[2] if len(parts) > 2 else None
    return Query(resource, namespace, name, subresource, params)


@attrs.define(kw_only=True)
class RealisticKubernetes(kmock.KubernetesScaffold):
    store: Store = attrs.field(factory=lambda: Store(list(CORE)))

    def declare(self, resource: ResourceDef) -> None:
        self.store.resources[resource.key] = resource

    def _declare_discovery(self) -> None:
        for resource in self.store.resources.values():
            self.resources[resource.key] = {
                "namespaced": resource.namespaced,
                "kind": resource.kind,
                "singular": resource.singular or resource.kind.lower(),
                "verbs": [
                    "list",
                    "watch",
                    "get",
                    "create",
                    "update",
                    "patch",
                    "delete",
                    "deletecollection",
                ],
                "shortnames": resource.shortnames,
                "categories": resource.categories,
                "subresources": ["status"] if resource.status_subresource else [],
            }

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        query = route_path(self.store, raw_request.path, dict(raw_request.query))
        if query is not None:
            return await self.store.handle(raw_request, query)
        return await super().__call__(raw_request)

    # KMock's discovery hook; it has no public one (KMock is pinned exactly, so a rename shows
    # up as a failing test rather than silently).
    async def _serve_version(self, request: kmock.Request) -> kmock.Payload:
        payload = await super()._serve_version(request)
        if isinstance(payload, dict) and payload.get("groupVersion") == "/v1":
            payload["groupVersion"] = "v1"  # the core group has no name
        for entry in payload.get("resources", []) if isinstance(payload, dict) else []:
            if "/" in entry["name"]:  # subresources carry no short names or categories
                entry["shortNames"], entry["categories"] = [], []
        return payload


class KubeApi:
    """The realistic API on a background thread: `url`, `kubeconfig`, and `call()` into it."""

    def __init__(self, resources: list[ResourceDef], workdir: Path) -> None:
        self.handler = RealisticKubernetes()
        for resource in resources:
            self.handler.declare(resource)
        self.handler._declare_discovery()
        self.workdir = workdir
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._stack: list[Any] = []
        self.url = ""

    @property
    def store(self) -> Store:
        return self.handler.store

    def call(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the API's loop (the store is not thread-safe) and return its result."""

        async def run() -> T:
            return fn()

        return self.run(run())

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def __enter__(self) -> "KubeApi":
        self._thread.start()

        async def start() -> str:
            server = kmock.Server(self.handler)
            await self.handler.__aenter__()
            await server.__aenter__()
            self._stack[:] = [server]
            return str(server.url).rstrip("/")

        self.url = self.run(start())
        self.kubeconfig = self.workdir / "kubeconfig"
        self.kubeconfig.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": "kmock",
                    "clusters": [{"name": "kmock", "cluster": {"server": self.url}}],
                    "users": [{"name": "tester", "user": {"token": "test"}}],
                    "contexts": [
                        {
                            "name": "kmock",
                            "context": {
                                "cluster": "kmock",
                                "user": "tester",
                                "namespace": "default",
                            },
                        }
                    ],
                }
            )
        )
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            for watcher in list(self.store.watchers):
                watcher.queue.put_nowait({"type": "ERROR", "object": {}})
            await self._stack[0].__aexit__(None, None, None)
            await self.handler.__aexit__(None, None, None)

        try:
            self.run(stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)
