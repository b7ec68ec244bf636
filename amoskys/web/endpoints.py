"""The JSON API's endpoint framework: a route is declared once — method, path, role, and its path, query
and body parameters as typed msgspec structs in the handler's signature — and from that one declaration
requests are authenticated, checked for role and CSRF, decoded and validated, errors mapped to JSON, and
the OpenAPI document generated."""

from __future__ import annotations

import typing
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from amoskys import __version__
from amoskys.control_service import (
    Actor,
    BadRequestError,
    UnknownActionError,
    UnknownAgentError,
    UnknownTokenError,
    UnknownUserError,
)
from amoskys.detections.desk import UnknownAlertError, UnknownRuleError, UnknownSuppressionError
from amoskys.errors import AmoskysError
from amoskys.store import StateConflictError
from amoskys.supervisor import CollectorRefusedError, UnknownCollectorError
from amoskys.web.auth import Principal
from amoskys.web.context import WebContext

Role = Literal["public", "viewer", "admin"]
Method = Literal["GET", "POST"]
Where = Literal["path", "query", "body"]
Handler = Callable[..., Awaitable[Any]]

#: errors of the control service (and the parts it drives) answered with a status, not a 503
ERROR_STATUS: tuple[tuple[type[Exception], int], ...] = (
    (UnknownCollectorError, 404),
    (UnknownActionError, 404),
    (UnknownAgentError, 404),
    (UnknownUserError, 404),
    (UnknownTokenError, 404),
    (UnknownAlertError, 404),
    (UnknownRuleError, 404),
    (UnknownSuppressionError, 404),
    (CollectorRefusedError, 409),
    (StateConflictError, 409),
    (BadRequestError, 400),
)
_MAPPED = tuple(cls for cls, _ in ERROR_STATUS)
_TRUTHY = {"yes": "true", "no": "false"}  # accepted for booleans besides 1/0 and true/false


class ApiError(Exception):
    """An error answered as JSON ``{"error": message}`` with an HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class Call:
    """One request as a handler sees it (its parameters come decoded, as keyword arguments)."""

    request: Request
    ctx: WebContext
    principal: Principal | None

    @property
    def p(self) -> Principal:
        """The logged-in principal (every route but the public ones has one)."""
        if self.principal is None:
            raise ApiError(401, "not logged in")
        return self.principal

    @property
    def remote(self) -> str:
        return self.request.client.host if self.request.client else ""

    @property
    def actor(self) -> Actor:
        """The principal as the control service's actor."""
        return Actor(self.p.user, self.remote)


@dataclass(frozen=True, slots=True)
class Params:
    """One parameter struct of an endpoint: where its fields come from, and their schema."""

    where: Where
    struct: type[msgspec.Struct]
    descriptions: Mapping[str, str]
    booleans: frozenset[str]

    @classmethod
    def of(cls, where: Where, struct: type[msgspec.Struct]) -> Params:
        info = msgspec.inspect.type_info(struct)
        if not isinstance(info, msgspec.inspect.StructType):
            raise TypeError(f"{struct!r}: expected a msgspec.Struct")
        props = object_schema(struct).get("properties", {})
        booleans = {f.encode_name for f in info.fields if _is_bool(f.type)}
        described = {k: v["description"] for k, v in props.items() if "description" in v}
        return cls(where, struct, described, frozenset(booleans))

    def from_strings(self, values: Mapping[str, str]) -> msgspec.Struct:
        """Decode path or query strings (empty ones stand for the default)."""
        raw = {k: _TRUTHY.get(v.lower(), v) if k in self.booleans else v for k, v in values.items() if v}
        try:
            return msgspec.convert(raw, self.struct, strict=False)
        except msgspec.ValidationError as err:
            raise ApiError(400, self.problem(err)) from None

    async def from_body(self, request: Request) -> msgspec.Struct:
        """Decode a JSON body (strictly), or form fields (empty ones stand for the default)."""
        if "application/json" in request.headers.get("content-type", ""):
            try:
                return msgspec.json.decode(await request.body(), type=self.struct)
            except msgspec.ValidationError as err:
                raise ApiError(400, self.problem(err)) from None
            except msgspec.DecodeError:
                raise ApiError(400, "request body is not valid JSON") from None
        return self.from_strings(_strings(await request.form()))

    def problem(self, err: msgspec.ValidationError) -> str:
        """``<where> parameter 'name': <what is wrong> (<its description>)``."""
        text = str(err)
        what, sep, at = text.rpartition(" - at `$")
        if not sep:  # about the whole object: a missing field, or not an object at all
            return f"request {self.where}: {text[:1].lower()}{text[1:]}"
        name = at.rstrip("`").lstrip(".").split(".", 1)[0].split("[", 1)[0]
        kind = "body field" if self.where == "body" else f"{self.where} parameter"
        described = self.descriptions.get(name)
        return f"{kind} {name!r}: {what[:1].lower()}{what[1:]}" + (f" ({described})" if described else "")


def object_schema(struct: type[msgspec.Struct]) -> dict[str, Any]:
    """The JSON schema of one struct (its properties and which are required)."""
    (ref,), components = msgspec.json.schema_components([struct], ref_template="{name}")
    found: dict[str, Any] = components[ref["$ref"]]
    return found


def _is_bool(t: msgspec.inspect.Type) -> bool:
    if isinstance(t, msgspec.inspect.Metadata):
        return _is_bool(t.type)
    if isinstance(t, msgspec.inspect.BoolType):
        return True
    return isinstance(t, msgspec.inspect.UnionType) and any(_is_bool(x) for x in t.types)


def _strings(form: FormData) -> dict[str, str]:
    return {k: v for k, v in form.items() if isinstance(v, str)}


@dataclass(frozen=True)
class Endpoint:
    method: Method
    path: str
    summary: str
    role: Role
    tag: str
    handler: Handler
    params: tuple[Params, ...] = ()

    @property
    def name(self) -> str:
        return self.handler.__name__

    def params_in(self, where: Where) -> Params | None:
        return next((p for p in self.params if p.where == where), None)

    async def invoke(self, request: Request, ctx: WebContext, principal: Principal | None) -> Any:
        """Decode the parameters and run the handler (the caller checked who asks). Raises ApiError,
        also for the control service's errors that have a status (ERROR_STATUS)."""
        kwargs: dict[str, msgspec.Struct] = {}
        for p in self.params:
            if p.where == "path":
                kwargs["path"] = p.from_strings(request.path_params)
            elif p.where == "query":
                kwargs["query"] = p.from_strings(request.query_params)
            else:
                kwargs["body"] = await p.from_body(request)
        try:
            return await self.handler(Call(request, ctx, principal), **kwargs)
        except _MAPPED as err:
            status = next(s for cls, s in ERROR_STATUS if isinstance(err, cls))
            raise ApiError(status, str(err)) from err


@dataclass
class Router:
    """The endpoints of one route module, all under one OpenAPI tag."""

    tag: str
    endpoints: list[Endpoint] = field(default_factory=list)

    def get(self, path: str, summary: str, *, role: Role = "viewer") -> Callable[[Handler], Endpoint]:
        return self.route("GET", path, summary, role=role)

    def post(self, path: str, summary: str, *, role: Role = "viewer") -> Callable[[Handler], Endpoint]:
        return self.route("POST", path, summary, role=role)

    def route(self, method: Method, path: str, summary: str, *, role: Role) -> Callable[[Handler], Endpoint]:
        """Declare `handler` ``(call, *, path=..., query=..., body=...)``: the annotated struct types of
        those keyword arguments are its parameters."""

        def register(handler: Handler) -> Endpoint:
            hints = typing.get_type_hints(handler)
            params = tuple(Params.of(w, hints[w]) for w in ("path", "query", "body") if w in hints)
            ep = Endpoint(method, path, summary, role, self.tag, handler, params)
            self.endpoints.append(ep)
            return ep

        return register


def same_origin(request: Request) -> bool:
    """A browser's Origin header, when sent, must name this very host (CSRF defence in depth)."""
    origin = request.headers.get("origin")
    if not origin:
        return True
    return origin.split("://", 1)[-1].rstrip("/") == request.headers.get("host", "")


# ---------------------------------------------------------------------- OpenAPI
REF = "#/components/schemas/{name}"


def _flat(schema: dict[str, Any]) -> dict[str, Any]:
    """An optional parameter's schema without its ``null`` alternative (absence says it)."""
    alts = schema.get("anyOf")
    if alts and {"type": "null"} in alts:
        rest = [a for a in alts if a != {"type": "null"}]
        out = {k: v for k, v in schema.items() if k != "anyOf"}
        return out | (rest[0] if len(rest) == 1 else {"anyOf": rest})
    return schema


def _parameters(params: Params) -> list[dict[str, Any]]:
    schema = object_schema(params.struct)
    required = set(schema.get("required", ()))
    out = []
    for name, prop in schema.get("properties", {}).items():
        prop = dict(prop)
        description = prop.pop("description", "")
        out.append(
            {
                "name": name,
                "in": params.where,
                "required": name in required or params.where == "path",
                "description": description,
                "schema": _flat(prop),
            }
        )
    return out


def openapi(endpoints: list[Endpoint]) -> dict[str, Any]:
    """The OpenAPI 3.1 document, generated from the endpoint declarations."""
    bodies = [p.struct for ep in endpoints for p in ep.params if p.where == "body"]
    refs, components = msgspec.json.schema_components(bodies, ref_template=REF)
    body_ref = dict(zip(bodies, refs, strict=True))
    paths: dict[str, Any] = {}
    for ep in endpoints:
        op: dict[str, Any] = {
            "summary": ep.summary,
            "operationId": ep.name,
            "tags": [ep.tag] if ep.tag else [],
            "responses": {
                "200": {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}},
                "400": {"description": "Bad request: the message names the parameter"},
                "401": {"description": "Not logged in"},
                "403": {"description": "Not allowed for this role, or a missing/wrong CSRF token"},
                "413": {"description": "Request body too large ([web] max_body_bytes; 8 KiB for login)"},
            },
        }
        if ep.role != "public":
            op["security"] = [{"session": []}, {"token": []}]
        parameters = [q for p in ep.params if p.where != "body" for q in _parameters(p)]
        if parameters:
            op["parameters"] = parameters
        body = ep.params_in("body")
        if body is not None:
            op["requestBody"] = {
                "required": bool(object_schema(body.struct).get("required")),
                "content": {
                    "application/json": {"schema": body_ref[body.struct]},
                    "application/x-www-form-urlencoded": {"schema": body_ref[body.struct]},
                },
            }
        op["x-amoskys-role"] = ep.role
        paths.setdefault(ep.path, {})[ep.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "AMOSKYS appliance API", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "session": {"type": "apiKey", "in": "cookie", "name": "amoskys_session"},
                "token": {"type": "http", "scheme": "bearer"},
            },
        },
    }


# ---------------------------------------------------------------------- serving
class FastJSON(Response):
    """An API answer encoded by msgspec (in C: a 50-row page in 13 µs, json.dumps 137 µs): lists of rows are encoded on the
    loop, so their cost is loop time. Non-finite floats become null."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return _ENCODER.encode(content)


def _plain(obj: Any) -> Any:
    """What json.dumps would make of a value msgspec does not encode itself (str, int and float
    subclasses, as the collectors' status reasons are)."""
    for base in (str, int, float):
        if isinstance(obj, base):
            return base(obj)
    raise TypeError(f"cannot encode {type(obj).__name__} as JSON")


_ENCODER = msgspec.json.Encoder(enc_hook=_plain)


def starlette_routes(ctx: WebContext, endpoints: list[Endpoint]) -> list[Route]:
    """Starlette routes for every endpoint, each wrapped with authentication, the role check, CSRF on
    state-changing requests, and JSON errors; and /api/v1/openapi.json."""
    out = [Route(ep.path, _wrap(ctx, ep), methods=[ep.method]) for ep in endpoints]
    doc = openapi(endpoints)

    async def openapi_doc(request: Request) -> Response:
        return JSONResponse(doc)

    out.append(Route("/api/v1/openapi.json", openapi_doc, methods=["GET"]))
    return out


def _wrap(ctx: WebContext, ep: Endpoint) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        if ep.method == "POST" and not same_origin(request):
            return JSONResponse({"error": "cross-origin request refused"}, status_code=403)
        principal = await ctx.auth.authenticate(request, ctx.cookie_name)
        if ep.role != "public":
            if principal is None:
                return JSONResponse({"error": "not logged in"}, status_code=401)
            if ep.role == "admin" and not principal.is_admin:
                return JSONResponse({"error": "this needs the admin role"}, status_code=403)
            if ep.method == "POST" and not ctx.auth.csrf_ok(
                principal, request.headers.get("x-csrf-token", "")
            ):
                return JSONResponse({"error": "missing or wrong CSRF token (X-CSRF-Token)"}, status_code=403)
        try:
            result = await ep.invoke(request, ctx, principal)
        except ApiError as err:
            return JSONResponse({"error": err.message}, status_code=err.status)
        except AmoskysError as err:
            return JSONResponse({"error": str(err)}, status_code=503)
        return result if isinstance(result, Response) else FastJSON(result)

    endpoint.__name__ = ep.name
    return endpoint
