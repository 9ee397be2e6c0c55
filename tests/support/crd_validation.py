"""Validate objects against a CRD the way kube-apiserver does, without an API server.

Order as in the API server: structural defaulting, then the OpenAPI schema (with Kubernetes'
extensions mapped onto JSON Schema), then every x-kubernetes-validations CEL rule with `self`
bound to the node that declares it.
"""

import copy
from collections.abc import Iterator
from typing import Any

import celpy
import jsonschema
import re2

Schema = dict[str, Any]


def _to_json_schema(schema: Schema) -> Schema:
    result: Schema = {}
    for key, value in schema.items():
        if key == "x-kubernetes-int-or-string":
            result["anyOf"] = [{"type": "integer"}, {"type": "string"}]
        elif key == "x-kubernetes-list-type" and value == "set":
            result["uniqueItems"] = True
        elif key in ("properties",):
            result[key] = {name: _to_json_schema(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            result[key] = _to_json_schema(value)
        elif not key.startswith("x-kubernetes") and key != "default":
            result[key] = value
    if "properties" in result and result.get("type") == "object":
        # Structural schemas prune unknown fields, but `kubectl apply` with validation (and the
        # server's strict field validation) rejects them: model that as an error.
        result.setdefault("additionalProperties", False)
    return result


def _pattern(
    validator: Any, pattern: str, instance: Any, schema: Schema
) -> Iterator[jsonschema.ValidationError]:
    # kube-apiserver matches patterns with Go's RE2, where `$` is the end of the text; Python's
    # `re` would also let it match before a final newline.
    if validator.is_type(instance, "string") and not re2.search(pattern, instance):
        shown = instance if len(instance) <= 80 else instance[:80] + "..."
        yield jsonschema.ValidationError(f"{shown!r} does not match {pattern!r}")


_SchemaValidator = jsonschema.validators.extend(jsonschema.Draft7Validator, {"pattern": _pattern})


def apply_defaults(schema: Schema, value: Any) -> Any:
    if isinstance(value, dict):
        for name, sub in (schema.get("properties") or {}).items():
            if name not in value and "default" in sub:
                value[name] = copy.deepcopy(sub["default"])
            if name in value:
                value[name] = apply_defaults(sub, value[name])
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [apply_defaults(schema["items"], item) for item in value]
    return value


def _cel_nodes(schema: Schema, value: Any, path: str) -> Iterator[tuple[Schema, Any, str]]:
    yield schema, value, path
    if isinstance(value, dict):
        for name, sub in (schema.get("properties") or {}).items():
            if name in value:
                yield from _cel_nodes(sub, value[name], f"{path}.{name}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            yield from _cel_nodes(schema["items"], item, f"{path}[{index}]")


_CEL = celpy.Environment()


def _cel_holds(rule: str, value: Any) -> bool:
    program = _CEL.program(_CEL.compile(rule))
    try:
        return bool(program.evaluate({"self": celpy.json_to_cel(value)}))
    except celpy.CELEvalError:
        return False  # the API server reports a rule that errors as a failed validation


class CrdValidator:
    def __init__(self, crd: Schema) -> None:
        self.schema: Schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        self._json = _SchemaValidator(_to_json_schema(self.schema))

    def errors(self, manifest: Any) -> list[str]:
        """Every rejection as 'path: message'; empty when the API server would accept it."""
        obj = apply_defaults(self.schema, copy.deepcopy(manifest))
        found = [
            f"{'.'.join(str(p) for p in error.absolute_path) or '<root>'}: {error.message}"
            for error in self._json.iter_errors(obj)
        ]
        if found:
            return found  # CEL rules are only evaluated on schema-valid objects here
        for schema, value, path in _cel_nodes(self.schema, obj, ""):
            for rule in schema.get("x-kubernetes-validations") or []:
                if not _cel_holds(rule["rule"], value):
                    found.append(
                        f"{path.lstrip('.') or '<root>'}{rule.get('fieldPath', '')}: "
                        f"{rule['message']}"
                    )
        return found
