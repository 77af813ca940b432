"""GET /docs works offline: the page names only this service, and its assets are served from the package."""

from __future__ import annotations

import base64
import hashlib
import re
import tomllib
from fnmatch import fnmatch
from pathlib import Path

import httpx

from novita_gpu.web.docs_page import STATIC_DIR
from tests.harness import Harness

ROOT = Path(__file__).resolve().parents[3]
_ATTRIBUTE_URL = re.compile(r"""(?:src|href)\s*=\s*["']([^"']*)["']""")
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def _asset_urls(html: str) -> list[str]:
    return _ATTRIBUTE_URL.findall(html)


async def test_the_docs_page_references_nothing_outside_this_service(harness: Harness) -> None:
    response = await harness.http.get("/docs")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    html = response.text
    assert "SwaggerUIBundle" in html and "'/openapi.json'" in html
    assert "://" not in html, "an absolute URL: the page would need the Internet"
    assert '"validatorUrl": null' in html  # no badge fetched from validator.swagger.io
    urls = _asset_urls(html)
    assert len(urls) == 3  # stylesheet, icon, script
    for url in urls:
        assert url.startswith("/docs/static/") and not url.startswith("//"), url
        asset = await harness.http.get(url)
        assert asset.status_code == 200, url
        assert asset.content == (STATIC_DIR / url.rsplit("/", 1)[1]).read_bytes()
    types = {url.rsplit(".", 1)[1]: (await harness.http.get(url)).headers["content-type"] for url in urls}
    assert types["js"].startswith(("text/javascript", "application/javascript"))
    assert types["css"].startswith("text/css") and types["png"] == "image/png"


async def test_the_docs_page_forbids_anything_but_its_own_origin_and_inline_script(harness: Harness) -> None:
    response = await harness.http.get("/docs")
    csp = response.headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["default-src"] == "'none'" and directives["connect-src"] == "'self'"
    assert "http" not in csp and "*" not in csp and "unsafe-eval" not in csp
    # The one inline script (Swagger UI's start-up) is allowed by its hash, not by 'unsafe-inline'.
    scripts = _INLINE_SCRIPT.findall(response.text)
    assert len(scripts) == 1
    digest = base64.b64encode(hashlib.sha256(scripts[0].encode()).digest()).decode()
    assert directives["script-src"] == f"'self' 'sha256-{digest}'"
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_the_document_it_shows_answers_and_redoc_is_not_served(harness: Harness) -> None:
    assert (await harness.http.get("/openapi.json")).status_code == 200
    assert (await harness.http.get("/redoc")).status_code == 404  # it would load from a CDN
    assert (await harness.http.get("/docs/static/missing.js")).status_code == 404
    spec = (await harness.http.get("/openapi.json")).json()
    assert not any(path.startswith("/docs") for path in spec["paths"])


async def test_the_docs_page_follows_the_root_path_behind_a_prefixing_proxy(harness: Harness) -> None:
    transport = httpx.ASGITransport(app=harness.app, root_path="/gpu")
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        html = (await client.get("/gpu/docs")).text
        assert "'/gpu/openapi.json'" in html
        urls = _asset_urls(html)
        assert urls and all(url.startswith("/gpu/docs/static/") for url in urls)
        for url in urls:
            assert (await client.get(url)).status_code == 200, url


async def test_the_docs_page_is_answered_for_loopback_names_only_without_api_keys(harness: Harness) -> None:
    assert (await harness.http.get("/docs", headers={"Host": "127.0.0.1:3000"})).status_code == 200
    refused = await harness.http.get("/docs", headers={"Host": "attacker.example"})
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "HOST_NOT_ALLOWED"
    assert (
        await harness.http.get("/docs/static/swagger-ui.css", headers={"Host": "attacker.example"})
    ).status_code == 400


def test_the_assets_and_their_licence_ship_in_the_package() -> None:
    """A regular (non-editable) install, as in the container image, must carry the files."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["novita_gpu"]
    package_root = ROOT / "src" / "novita_gpu"
    shipped = [p.relative_to(package_root).as_posix() for p in STATIC_DIR.iterdir()]
    assert {"swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png", "LICENSE", "NOTICE"} <= {
        Path(p).name for p in shipped
    }
    for path in shipped:
        assert any(fnmatch(path, pattern) for pattern in patterns), f"{path} is not in package-data"
