"""The endpoint framework: every route's parameters are declared once (msgspec structs), documented in
the OpenAPI document from that declaration, and enforced from it — checked here for every route."""

from __future__ import annotations

import re
from typing import Any

import pytest

from amoskys.web.endpoints import Endpoint, object_schema
from amoskys.web.routes import ENDPOINTS

from web_harness import Web


def _bad_values(schema: dict[str, Any]) -> list[Any]:
    """Query/path strings this field's declaration refuses (none for a free-form string)."""
    alts = schema.get("anyOf", [schema])
    out: list[Any] = []
    for a in alts:
        if a.get("type") == "integer":
            out.append("not-a-number")
            if "minimum" in a:
                out.append(str(a["minimum"] - 1))
            if "maximum" in a:
                out.append(str(a["maximum"] + 1))
        elif a.get("type") == "boolean":
            out.append("maybe")
        elif "enum" in a or a.get("pattern") or a.get("format") == "date-time":
            out.append("!nope!")
    return out


def _wrong_json(schema: dict[str, Any]) -> Any:
    """A JSON value of the wrong type for this body field."""
    alts = schema.get("anyOf", [schema])
    return "not-a-number" if any(a.get("type") == "integer" for a in alts) else 12345


def _url(ep: Endpoint, bad: dict[str, str] | None = None) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: (bad or {}).get(m.group(1), "1"), ep.path)


def _cases() -> list[tuple[Endpoint, str, str, Any]]:
    cases = []
    for ep in ENDPOINTS:
        for p in ep.params:
            for name, prop in object_schema(p.struct).get("properties", {}).items():
                if p.where == "body":
                    cases.append((ep, "body", name, _wrong_json(prop)))
                else:
                    cases += [(ep, p.where, name, v) for v in _bad_values(prop)]
    return cases


def test_every_declared_path_parameter_is_in_the_path_and_back() -> None:
    for ep in ENDPOINTS:
        in_path = set(re.findall(r"\{(\w+)\}", ep.path))
        declared = ep.params_in("path")
        fields = set(object_schema(declared.struct)["properties"]) if declared else set()
        assert fields == in_path, ep.path


async def test_every_declared_parameter_is_in_the_openapi_document(web: Web) -> None:
    doc = (await web.client().get("/api/v1/openapi.json")).json()
    components = doc["components"]["schemas"]
    for ep in ENDPOINTS:
        op = doc["paths"][ep.path][ep.method.lower()]
        assert op["x-amoskys-role"] == ep.role and op["operationId"] == ep.name
        for p in ep.params:
            schema = object_schema(p.struct)
            if p.where == "body":
                ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
                documented = components[ref.rsplit("/", 1)[-1]]
                assert documented["properties"].keys() == schema["properties"].keys(), ep.path
                assert set(documented.get("required", ())) == set(schema.get("required", ())), ep.path
                continue
            listed = {q["name"]: q for q in op["parameters"] if q["in"] == p.where}
            assert listed.keys() == schema["properties"].keys(), (ep.path, p.where)
            for name in schema.get("required", ()):
                assert listed[name]["required"] is True, (ep.path, name)
    # the constraints are the declaration's, not prose
    limit = {q["name"]: q for q in doc["paths"]["/api/v1/events"]["get"]["parameters"]}["limit"]
    assert limit["schema"] == {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}


CASES = _cases()


def test_the_generic_cases_cover_every_kind_of_parameter() -> None:
    assert {where for _, where, _, _ in CASES} == {"path", "query", "body"}
    assert len({(ep.path, name) for ep, _, name, _ in CASES}) >= 25


@pytest.mark.parametrize(
    ("ep", "where", "name", "value"),
    CASES,
    ids=[f"{ep.method} {ep.path} {where}:{name}={value!r}" for ep, where, name, value in CASES],
)
async def test_a_refused_parameter_gets_400_naming_it(
    web: Web, ep: Endpoint, where: str, name: str, value: Any
) -> None:
    c, csrf = await web.login("admin", web.admin_password)
    url = _url(ep, {name: value} if where == "path" else None)
    kwargs: dict[str, Any] = {}
    if where == "query":
        kwargs["params"] = {name: value}
    if where == "body":
        kwargs["json"] = {name: value}
    if ep.method == "POST":
        r = await c.post(url, headers={"X-CSRF-Token": csrf}, **kwargs)
    else:
        r = await c.get(url, **kwargs)
    assert r.status_code == 400, (url, r.text)
    error = r.json()["error"]
    kind = "body field" if where == "body" else f"{where} parameter"
    assert error.startswith(f"{kind} {name!r}: ") and len(error) > len(f"{kind} {name!r}: ") + 5, error


async def test_a_body_that_is_not_a_json_object_is_refused(web: Web) -> None:
    c, csrf = await web.login("admin", web.admin_password)
    h = {"X-CSRF-Token": csrf, "Content-Type": "application/json"}
    broken = await c.post("/api/v1/tokens", content=b"{nope", headers=h)
    assert broken.status_code == 400 and broken.json() == {"error": "request body is not valid JSON"}
    listed = await c.post("/api/v1/tokens", content=b"[1]", headers=h)
    assert listed.status_code == 400 and "object" in listed.json()["error"]
    missing = await c.post("/api/v1/users", json={"name": "ops"}, headers={"X-CSRF-Token": csrf})
    assert missing.status_code == 400 and "`role`" in missing.json()["error"]


async def test_query_strings_take_the_usual_spellings_and_empty_means_default(web: Web) -> None:
    c, _ = await web.login("admin", web.admin_password)
    for value in ("1", "true", "yes"):
        assert (await c.get("/api/v1/audit", params={"remote": value})).json()["remote"] is True
    for value in ("0", "false", "no", ""):
        assert (await c.get("/api/v1/audit", params={"remote": value})).json()["remote"] is False
    assert (await c.get("/api/v1/events", params={"limit": "", "kind": ""})).status_code == 200
