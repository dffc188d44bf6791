"""Every route of the API, enumerated from /openapi.json, keeps tenants apart.

The test knows no route by name: it reads the OpenAPI document, so a route another area adds
is covered the day it lands. Tenant A creates what it can (each collection's POST with a body
built from its schema), every object id A can see is collected from its listings, and then
tenant B (an admin of its own tenant) calls every operation with A's ids in the path and A's
tenant in the query: each answer is 404 (or 403 for the operator's routes), never 2xx or 5xx,
no listing B gets contains anything of A's, and A's objects are unchanged afterwards. Without
a token every /v1 route answers 401.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gpucloud.store.db import Database
from tests.billing_api import bearer
from tests.harness import Harness, make_harness

PARAM = re.compile(r"\{([^}]+)\}")
# Objects of the platform itself, not of any tenant: every tenant may read them, only the
# operator changes them.
SHARED_PARAMS = {"node_id", "key", "model"}
TENANT_QUERY = {"tenant", "tenant_id"}
METHODS = ("get", "post", "put", "patch", "delete")


@dataclass
class World:
    h: Harness
    api: TestClient
    spec: dict[str, Any]
    a_token: str
    b_token: str
    a_tenant: str
    a_ids: dict[str, list[str]] = field(default_factory=dict)  # collection path -> A's ids
    shared_ids: dict[str, list[str]] = field(default_factory=dict)  # the fleet's, A's tenant

    def all_a_ids(self) -> set[str]:
        return {i for ids in self.a_ids.values() for i in ids}


def resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = spec["components"]["schemas"][name]
    return schema


def example(spec: dict[str, Any], schema: dict[str, Any], depth: int = 0) -> Any:
    """A small value that satisfies ``schema`` (its required fields only)."""
    schema = resolve(spec, schema)
    for key in ("example", "default"):
        if key in schema and schema[key] is not None:
            return schema[key]
    if schema.get("examples"):
        return schema["examples"][0]
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            branches = [b for b in schema[key] if resolve(spec, b).get("type") != "null"]
            return example(spec, branches[0], depth + 1) if branches else None
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        return {
            name: example(spec, props[name], depth + 1)
            for name in schema.get("required", [])
            if name in props and depth < 6
        }
    if kind == "array":
        items = schema.get("items", {})
        return [example(spec, items, depth + 1) for _ in range(schema.get("minItems", 0))]
    if kind == "integer":
        return max(int(schema.get("minimum", 1)), int(schema.get("exclusiveMinimum", 0)) + 1)
    if kind == "number":
        return max(float(schema.get("minimum", 1)), 1.0)
    if kind == "boolean":
        return False
    if kind == "string":
        return "x" * max(int(schema.get("minLength", 1)), 1)
    return None


def request_body(spec: dict[str, Any], op: dict[str, Any]) -> Any:
    content = op.get("requestBody", {}).get("content", {})
    if "application/json" not in content:
        return None
    return example(spec, content["application/json"].get("schema", {}))


def operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, ops in spec["paths"].items():
        for method in METHODS:
            if method in ops:
                yield method, path, ops[method]


def collection_of(path: str) -> str:
    """/v1/jobs/{job_id}/events -> /v1/jobs: where the object of the first parameter lives."""
    return path.split("/{", 1)[0]


def ids_in(body: Any) -> list[str]:
    items = body.get("items") if isinstance(body, dict) else body
    if not isinstance(items, list):
        return []
    return [i["id"] for i in items if isinstance(i, dict) and isinstance(i.get("id"), str)]


@pytest.fixture
def world(db: Database) -> World:
    h = make_harness(db)
    api = h.api()
    admin = bearer(h.admin_token)
    tokens = {}
    tenant_ids = {}
    for name in ("tenant-a", "tenant-b"):
        made = api.post("/v1/tenants", json={"name": name}, headers=admin)
        assert made.status_code == 201, made.text
        tenant_ids[name] = made.json()["id"]
        user = api.post(
            "/v1/users",
            json={"name": f"{name}-admin", "tenant": name, "role": "admin"},
            headers=admin,
        )
        assert user.status_code == 201, user.text
        tokens[name] = user.json()["token"]
        topup = {"tenant": name, "amount": "1000", "ref": f"{name}-first"}
        api.post("/v1/admin/topups", json=topup, headers=admin).raise_for_status()
    spec = api.get("/openapi.json").json()
    w = World(h, api, spec, tokens["tenant-a"], tokens["tenant-b"], tenant_ids["tenant-a"])
    a = bearer(w.a_token)
    # A creates an object in every collection it can, from the schema alone.
    job = api.post("/v1/jobs", json={"command": ["sleep", "60"], "gpus": 1}, headers=a)
    assert job.status_code == 201, job.text
    for method, path, op in operations(spec):
        if method == "post" and "{" not in path and not path.startswith("/v1/admin"):
            api.post(path, json=request_body(spec, op), headers=a)
    h.settle()
    # Every id A can see in any listing of its own.
    for method, path, _ in operations(spec):
        if method == "get" and "{" not in path and path.startswith("/v1/"):
            listed = api.get(path, headers=a)
            found = ids_in(listed.json()) if listed.status_code == 200 else []
            if found:
                shared = path.startswith(("/v1/nodes", "/v1/tenants"))  # fleet; A's own tenant
                (w.shared_ids if shared else w.a_ids)[path] = found
    assert job.json()["id"] in w.a_ids["/v1/jobs"]
    return w


def fill(w: World, path: str) -> str:
    """A's object for each path parameter; a random id where A has none."""
    where = collection_of(path)
    ids = w.a_ids.get(where) or w.shared_ids.get(where) or [f"obj_{secrets.token_hex(8)}"]
    values = {"tenant": w.a_tenant, "tenant_id": w.a_tenant}
    return PARAM.sub(lambda m: values.get(m.group(1), ids[0]), path)


def operator_only(path: str) -> bool:
    return path.startswith(("/v1/admin", "/v1/debug"))


def call(w: World, method: str, path: str, op: dict[str, Any], token: str | None) -> Any:
    params = {
        p["name"]: w.a_tenant if p["name"] in TENANT_QUERY else example(w.spec, p["schema"])
        for p in op.get("parameters", [])
        if p["in"] == "query" and (p["name"] in TENANT_QUERY or p.get("required"))
    }
    headers = bearer(token) if token else {}
    return w.api.request(
        method.upper(),
        fill(w, path),
        json=request_body(w.spec, op),
        params=params,
        headers=headers,
    )


def test_tenant_b_gets_404_on_every_route_that_names_tenant_a(world: World) -> None:  # noqa: PLR0915
    w = world
    a_ids = w.all_a_ids()
    assert len(a_ids) >= 2, w.a_ids  # at least A's job and A's own token
    before = {
        j: w.api.get(f"/v1/jobs/{j}", headers=bearer(w.a_token)).json()["state"]
        for j in w.a_ids["/v1/jobs"]
    }
    failures: list[str] = []
    unproven: list[str] = []
    checked = 0
    for method, path, op in operations(w.spec):
        names = set(PARAM.findall(path))
        tenant_query = any(
            p["in"] == "query" and p["name"] in TENANT_QUERY for p in op.get("parameters", [])
        )
        if not path.startswith("/v1/"):
            continue
        response = call(w, method, path, op, w.b_token)
        label = f"{method.upper()} {path} -> {response.status_code}"
        if response.status_code >= 500:
            failures.append(f"{label}: {response.text[:200]}")
            continue
        if operator_only(path):
            checked += 1
            if response.status_code != 403:
                failures.append(f"{label}: an operator's route must be 403 for a tenant")
            continue
        if names and names <= SHARED_PARAMS:
            # The platform's own objects: readable by all, changed only by the operator.
            checked += 1
            if method == "get" and response.is_success:
                leaked = [i for i in a_ids if i in response.text]
                if leaked:
                    failures.append(f"{label}: shows tenant A's {leaked}")
            elif method != "get" and response.status_code not in (403, 404):
                failures.append(f"{label}: a tenant must not change the platform's objects")
            continue
        if names or tenant_query:
            checked += 1
            if response.status_code == 422 and collection_of(path) not in w.a_ids:
                # A has no such object (its schema-built create was refused): the random id
                # or body did not validate, so ownership is not proven here. Said, not hidden.
                unproven.append(label)
                continue
            if response.status_code not in (403, 404):
                failures.append(f"{label}: tenant A's object must be 404 for tenant B")
            continue
        if method == "get" and response.is_success:
            checked += 1
            leaked = [i for i in a_ids if i in response.text]
            if leaked:
                failures.append(f"{label}: tenant B's listing shows tenant A's {leaked}")
    assert not failures, "\n".join(failures)
    assert checked >= 20
    # Nothing B tried changed anything of A's.
    after = {
        j: w.api.get(f"/v1/jobs/{j}", headers=bearer(w.a_token)).json()["state"]
        for j in w.a_ids["/v1/jobs"]
    }
    assert after == before
    assert w.api.get("/v1/whoami", headers=bearer(w.a_token)).status_code == 200
    tokens = w.api.get("/v1/tokens", headers=bearer(w.a_token)).json()["items"]
    assert all(t.get("revoked_at") is None for t in tokens)
    print(f"{checked} operations checked as tenant B against tenant A's objects; "
          f"not proven (no object of A to aim at): {unproven}")


def test_every_v1_route_needs_a_token(world: World) -> None:
    w = world
    failures = []
    for method, path, op in operations(w.spec):
        if not path.startswith("/v1/"):
            continue
        response = call(w, method, path, op, None)
        if response.status_code != 401:
            failures.append(f"{method.upper()} {path} -> {response.status_code}")
        elif response.headers.get("WWW-Authenticate") != "Bearer":
            failures.append(f"{method.upper()} {path}: 401 without WWW-Authenticate")
    assert not failures, "\n".join(failures)
