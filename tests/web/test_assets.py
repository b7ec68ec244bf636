"""The dashboard's static files: linked by versioned URLs that browsers keep for good, revalidated by
ETag under any other URL, gzip-compressed for browsers that take it (pages never are), served as the
files in the package hold them."""

from __future__ import annotations

import gzip
import importlib.resources
import re

import pytest

from amoskys.web import assets

from web_harness import Web

STATIC = importlib.resources.files("amoskys") / "static"
PAGES = ("/", "/flows", "/host", "/alerts", "/alerts/rules", "/collectors")


def _file(name: str) -> bytes:
    return (STATIC / name).read_bytes()


async def test_pages_link_every_static_file_by_a_versioned_url_cached_for_a_year(web: Web) -> None:
    client, _ = await web.login("admin", web.admin_password)
    linked: set[str] = set()
    for page in PAGES:
        r = await client.get(page)
        assert r.status_code == 200, page
        assert not re.search(r'(?:href|src)="/static/[^"?]*"', r.text), f"{page} links an unversioned file"
        linked |= set(re.findall(r'(?:href|src)="(/static/[^"]+)"', r.text))
    names = {u.split("?")[0].removeprefix("/static/") for u in linked}
    assert {"app.css", "app.js", "status.js", "tables.js", "chart.css", "chart.js", "alerts.js"} <= names
    for url in sorted(linked):
        r = await client.get(url, headers={"Accept-Encoding": "identity"})
        name = url.split("?")[0].removeprefix("/static/")
        assert r.status_code == 200, url
        assert r.headers["cache-control"] == "public, max-age=31536000, immutable", url
        assert r.content == _file(name), url
        assert "content-encoding" not in r.headers
        assert r.headers["x-content-type-options"] == "nosniff"  # the security headers still apply
    css = await client.get(assets.url("app.css"))
    js = await client.get(assets.url("app.js"))
    assert css.headers["content-type"] == "text/css; charset=utf-8"
    assert js.headers["content-type"] == "text/javascript; charset=utf-8"


async def test_a_changed_file_gets_a_new_url() -> None:
    versions = {name: a.version for name, a in assets.ASSETS.items()}
    assert len(set(versions.values())) == len(versions)  # distinct files, distinct versions
    for name in ("app.css", "chart.js"):
        assert assets.url(name) == f"/static/{name}?v={versions[name]}"
    with pytest.raises(KeyError):
        assets.url("missing.css")  # a template naming a file that is not shipped fails loudly


async def test_any_other_url_of_a_file_is_revalidated_by_its_etag(web: Web) -> None:
    client = web.client()
    for url in ("/static/app.css", "/static/app.css?v=0123456789abcdef"):  # unversioned, stale version
        r = await client.get(url)
        assert r.status_code == 200
        assert r.headers["cache-control"] == "no-cache"
        etag = r.headers["etag"]
        again = await client.get(url, headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.content == b""
        assert again.headers["etag"] == etag
    current = await client.get(assets.url("app.css"), headers={"If-None-Match": etag})
    assert current.status_code == 304 and "immutable" in current.headers["cache-control"]
    other = await client.get("/static/app.css", headers={"If-None-Match": '"somethingelse"'})
    assert other.status_code == 200 and other.content == _file("app.css")
    # the gzip bytes are another representation: another tag
    plain = await client.get("/static/app.css", headers={"Accept-Encoding": "identity"})
    packed = await client.get("/static/app.css", headers={"Accept-Encoding": "gzip"})
    assert plain.headers["etag"] != packed.headers["etag"]
    crossed = {"Accept-Encoding": "gzip", "If-None-Match": plain.headers["etag"]}
    assert (await client.get("/static/app.css", headers=crossed)).status_code == 200
    listed = {"Accept-Encoding": "identity", "If-None-Match": f'"x", {plain.headers["etag"]}'}
    assert (await client.get("/static/app.css", headers=listed)).status_code == 304
    assert (await client.get("/static/app.css", headers={"If-None-Match": "*"})).status_code == 304


async def test_files_go_compressed_only_to_browsers_that_take_gzip_and_pages_never(web: Web) -> None:
    client, _ = await web.login("admin", web.admin_password)
    url = assets.url("chart.js")
    for header in ("gzip", "gzip, deflate, br", "br;q=1.0, gzip;q=0.8", "*"):
        r = await client.get(url, headers={"Accept-Encoding": header})
        assert r.headers["content-encoding"] == "gzip", header
        assert r.headers["vary"] == "Accept-Encoding"
        assert int(r.headers["content-length"]) < len(_file("chart.js")) / 2
        assert r.content == _file("chart.js")  # httpx decodes it: the same bytes
    for header in ("identity", "gzip;q=0", "br", "gzip;q=x", ""):
        r = await client.get(url, headers={"Accept-Encoding": header})
        assert "content-encoding" not in r.headers, header
        assert r.content == _file("chart.js")
    assert gzip.decompress(assets.ASSETS["app.css"].gzipped or b"") == _file("app.css")
    # pages carry the CSRF token beside text a request chooses (a search): never compressed (BREACH)
    page = await client.get("/search?q=abc", headers={"Accept-Encoding": "gzip"})
    assert page.status_code == 200 and "content-encoding" not in page.headers


async def test_unknown_names_and_paths_outside_the_folder_are_not_found(web: Web) -> None:
    client = web.client()
    for url in (
        "/static/missing.css",
        "/static/../pages.py",
        "/static/%2e%2e/pages.py",
        "/static/",
        "/static/x/app.css",
    ):
        r = await client.get(url)
        assert r.status_code == 404, url
    head = await client.head(assets.url("app.css"), headers={"Accept-Encoding": "identity"})
    assert head.status_code == 200 and head.headers["content-length"] == str(len(_file("app.css")))
    post = await client.post("/static/app.css")
    assert post.status_code == 405
