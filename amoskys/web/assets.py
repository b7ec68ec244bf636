"""The dashboard's static files (amoskys/static), served from memory.

Read once, at import (like the templates): serving one never reads a file or hops to a thread. Pages
link each file by a versioned URL (``/static/app.css?v=<digest of its bytes>``), which browsers keep for
a year without asking again; a changed file gets a new digest, so a new URL. Any other URL of a file
is answered with ``no-cache`` and its ETag (a 304 when the browser's copy is current). Files are
compressed with gzip once, here, and sent compressed to browsers that accept it. Only these files are
compressed: a page carries the CSRF token beside text a request chooses (a search), and compressing
the two together lets the response's size tell the token (BREACH)."""

from __future__ import annotations

import gzip
import hashlib
import importlib.resources
import mimetypes
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

#: a versioned URL's answer: its bytes never change
IMMUTABLE = "public, max-age=31536000, immutable"
#: any other URL: the browser may keep it, but asks (If-None-Match) before using it
REVALIDATE = "no-cache"
#: compressed only when it saves at least this share of the bytes
MIN_SAVING = 0.1


@dataclass(frozen=True)
class Asset:
    """One static file: its bytes, their gzip form (None: not worth it), type and digest."""

    body: bytes
    gzipped: bytes | None
    media_type: str
    version: str

    def etag(self, packed: bool) -> str:
        """The ETag of one form: the gzip bytes are another representation, so another tag."""
        return f'"{self.version}-gz"' if packed else f'"{self.version}"'


def _read() -> dict[str, Asset]:
    # the built-in table only: reading the system's MIME files (mimetypes.init) is not needed for ours
    types = mimetypes.MimeTypes(filenames=())
    types.add_type("text/javascript", ".js")  # RFC 9239 (older Pythons' table says application/javascript)
    out = {}
    for entry in (importlib.resources.files("amoskys") / "static").iterdir():
        if not entry.is_file():
            continue
        body = entry.read_bytes()
        packed = gzip.compress(body, compresslevel=9, mtime=0)
        out[entry.name] = Asset(
            body=body,
            gzipped=packed if len(packed) <= len(body) * (1 - MIN_SAVING) else None,
            media_type=types.guess_type(entry.name)[0] or "application/octet-stream",
            version=hashlib.sha256(body).hexdigest()[:16],
        )
    return out


#: every file of amoskys/static by name, read at import: serving never touches the disk
ASSETS = _read()


def url(name: str) -> str:
    """The versioned URL of static file ``name`` (for templates: ``{{ asset('app.css') }}``); an unknown
    name is a template bug and raises KeyError."""
    return f"/static/{name}?v={ASSETS[name].version}"


def _accepts_gzip(header: str) -> bool:
    """Whether an Accept-Encoding header takes gzip (named, else through ``*``, with a q above 0)."""
    weights: dict[str, float] = {}
    for part in header.split(","):
        coding, _, params = part.partition(";")
        name, q = coding.strip().lower(), params.strip().lower()
        try:
            weights[name] = float(q[2:]) if q.startswith("q=") else 1.0
        except ValueError:  # a malformed weight: as if the coding were not named
            continue
    return weights.get("gzip", weights.get("*", 0.0)) > 0


async def serve(request: Request) -> Response:
    asset = ASSETS.get(request.path_params["name"])
    if asset is None:
        return PlainTextResponse("Not Found", status_code=404)
    packed = asset.gzipped is not None and _accepts_gzip(request.headers.get("accept-encoding", ""))
    etag = asset.etag(packed)
    current = request.query_params.get("v") == asset.version
    headers = {
        "ETag": etag,
        "Cache-Control": IMMUTABLE if current else REVALIDATE,
        "Vary": "Accept-Encoding",
    }
    if_none_match = request.headers.get("if-none-match", "")
    if etag in if_none_match or if_none_match.strip() == "*":
        return Response(status_code=304, headers=headers)
    if packed and asset.gzipped is not None:
        headers["Content-Encoding"] = "gzip"
        return Response(asset.gzipped, media_type=asset.media_type, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)


def routes() -> list[Route]:
    """GET (and HEAD) /static/<name>."""
    return [Route("/static/{name}", serve, methods=["GET"])]
