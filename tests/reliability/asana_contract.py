"""Checks requests against Asana's OpenAPI spec (../shared/specs/asana/asana_oas.yaml): the method and path
exist, every query parameter is declared, every field of a JSON body is one the schema knows, and none of them
is one the spec marks `deprecated` (Asana answers those with an `Asana-Change` header)."""

from __future__ import annotations

import os
import re
from functools import cache
from pathlib import Path
from typing import Any

import yaml

# shared/ sits beside the repository (the developers' checkout and CI's clone alike); SYNCD_ASANA_SPEC overrides.
SPEC = Path(
    os.environ.get("SYNCD_ASANA_SPEC")
    or Path(__file__).resolve().parents[3] / "shared" / "specs" / "asana" / "asana_oas.yaml"
)
GLOBAL_PARAMS = {"opt_pretty", "opt_fields"}


@cache
def spec() -> dict[str, Any]:
    return yaml.load(SPEC.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def resolve(node: Any) -> Any:
    while isinstance(node, dict) and "$ref" in node:
        target: Any = spec()
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def schema_properties(schema: Any) -> dict[str, Any]:
    schema = resolve(schema)
    props = dict(schema.get("properties", {}))
    for part in schema.get("allOf", []) + schema.get("anyOf", []) + schema.get("oneOf", []):
        props.update(schema_properties(part))
    return props


def operation(method: str, path: str) -> tuple[str, dict[str, Any]] | None:
    for template, item in spec()["paths"].items():
        pattern = "^" + re.sub(r"\{[^}]+\}", r"[^/]+", template) + "$"
        if re.match(pattern, path) and method.lower() in item:
            return template, item
    return None


def violations(method: str, path: str, query: dict[str, str], body: Any) -> list[str]:
    path = path.removeprefix("/api/1.0")
    found = operation(method, path)
    if found is None:
        return [f"{method} {path}: no such operation in Asana's spec"]
    template, item = found
    op = item[method.lower()]
    params = {resolve(p)["name"]: resolve(p) for p in item.get("parameters", []) + op.get("parameters", [])}
    problems = [
        f"{method} {template}: undeclared query parameter {name!r}"
        for name in query
        if name not in params and name not in GLOBAL_PARAMS
    ]
    problems += [
        f"{method} {template}: query parameter {name!r} is deprecated"
        for name in query
        if name in params and params[name].get("deprecated")
    ]
    for name, param in params.items():
        if param.get("in") == "query" and param.get("required") and name not in query:
            problems.append(f"{method} {template}: required query parameter {name!r} missing")
    if "limit" in query and not (query["limit"].isdigit() and 1 <= int(query["limit"]) <= 100):
        problems.append(f"{method} {template}: limit={query['limit']} outside 1..100")
    if "requestBody" in op:
        content = resolve(op["requestBody"])["content"]["application/json"]["schema"]
        envelope = schema_properties(content)
        if not isinstance(body, dict) or not isinstance(body.get("data"), dict):
            return [*problems, f"{method} {template}: body is not {{'data': {{...}}}}"]
        known = schema_properties(envelope["data"])
        problems += [
            f"{method} {template}: body field {key!r} is not in the schema" for key in body["data"] if key not in known
        ]
        problems += [
            f"{method} {template}: body field {key!r} is deprecated"
            for key in body["data"]
            if key in known and resolve(known[key]).get("deprecated")
        ]
        required = resolve(envelope["data"]).get("required", [])
        problems += [
            f"{method} {template}: required body field {key!r} missing" for key in required if key not in body["data"]
        ]
    return problems
