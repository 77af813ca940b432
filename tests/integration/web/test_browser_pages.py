"""What a web page open in the user's browser can do to a service on their machine: nothing.

DNS rebinding: without API keys the service answers only requests addressed to a loopback name (or a
name in ALLOWED_HOSTS); a page on another domain that re-points its DNS at 127.0.0.1 is refused.
Cross-site requests: a page may send "simple" POSTs (form or text bodies, no preflight) to localhost;
no body of those kinds is read as JSON, so none can create, stop or delete an instance by name."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from novita_gpu.kit.settings import Settings
from novita_gpu.web.host_guard import answered_hosts, host_name
from tests.fixtures.live_service import live_service
from tests.harness import Harness

REBOUND = "attacker.example:3000"


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("localhost:3000", "localhost"),
        ("LOCALHOST.", "localhost"),
        ("127.0.0.1:3000", "127.0.0.1"),
        ("[::1]:3000", "::1"),
        ("[::1]", "::1"),
        ("Attacker.Example.:80", "attacker.example"),
        ("127.0.0.1.nip.io:3000", "127.0.0.1.nip.io"),
    ],
)
def test_host_names_are_read_without_port_brackets_case_or_trailing_dot(header: str, name: str) -> None:
    assert host_name(header) == name


def test_which_names_are_answered_follows_the_configuration() -> None:
    assert answered_hosts(Settings(_env_file=None)) == frozenset()  # loopback names only
    assert answered_hosts(Settings(_env_file=None, api_keys="k" * 20)) is None  # any: keys protect
    assert answered_hosts(Settings(_env_file=None, allow_unauthenticated=True)) is None
    configured = Settings(_env_file=None, api_keys="k" * 20, allowed_hosts="GPU.internal, gpu.example.")
    assert answered_hosts(configured) == {"gpu.internal", "gpu.example"}


async def test_a_rebound_name_is_refused_on_every_route_cached_reads_included(harness: Harness) -> None:
    created = await harness.create()
    path = f"/api/instances/{created['instanceId']}"
    assert (await harness.http.get(path)).status_code == 200  # now in the read cache
    for method, url in [("GET", path), ("GET", "/api/instances"), ("POST", "/api/instances"), ("GET", "/health")]:
        response = await harness.http.request(method, url, headers={"Host": REBOUND}, json={})
        assert response.status_code == 400, (method, url)
        error = response.json()["error"]
        assert error["code"] == "HOST_NOT_ALLOWED" and "ALLOWED_HOSTS" in error["message"]
        assert error["requestId"] == response.headers["x-request-id"]
    listed = (await harness.http.get("/api/instances")).json()
    assert [i["instanceId"] for i in listed["instances"]] == [created["instanceId"]]
    for host in ("localhost:3000", "127.0.0.1:3000", "[::1]:3000"):
        assert (await harness.http.get(path, headers={"Host": host})).status_code == 200


async def test_names_in_allowed_hosts_are_answered(tmp_path: Path) -> None:
    harness = await Harness(tmp_path, allowed_hosts="gpu.internal").start()
    try:
        assert (await harness.http.get("/health", headers={"Host": "gpu.internal:3000"})).status_code == 200
        assert (await harness.http.get("/health", headers={"Host": REBOUND})).status_code == 400
    finally:
        await harness.stop()


async def test_with_api_keys_any_name_is_answered_and_the_key_decides(tmp_path: Path) -> None:
    harness = await Harness(tmp_path, api_keys="sk-host-guard-key-1").start()
    try:
        anonymous = await harness.http.get("/api/instances", headers={"Host": REBOUND})
        assert anonymous.status_code == 401
        keyed = {"Host": REBOUND, "Authorization": "Bearer sk-host-guard-key-1"}
        assert (await harness.http.get("/api/instances", headers=keyed)).status_code == 200
    finally:
        await harness.stop()


async def test_over_real_http_a_rebound_page_cannot_create_an_instance(tmp_path: Path) -> None:
    async with live_service(tmp_path) as live, httpx.AsyncClient(base_url=live.url) as browser:
        body = {"name": "rebound", "productName": "RTX 4090 24GB", "templateId": "pytorch-jupyter"}
        refused = await browser.post("/api/instances", json=body, headers={"Host": REBOUND})
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "HOST_NOT_ALLOWED"
        assert (await browser.get("/api/instances")).json()["total"] == 0
        assert (await browser.post("/api/instances", json=body)).status_code == 201


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"]
)
async def test_a_cross_site_simple_post_cannot_create_or_act_by_name(harness: Harness, content_type: str) -> None:
    created = await harness.create(name="my-instance")
    headers = {"Content-Type": content_type}
    for path, body in [
        ("/api/instances", b'{"name": "x", "productName": "RTX 4090 24GB", "templateId": "pytorch-jupyter"}'),
        ("/api/instances/stop", b'{"instanceName": "my-instance"}'),
        ("/api/instances/delete", b'{"instanceName": "my-instance"}'),
        ("/api/instances/auto-stop/trigger", b'{"dryRun": false}'),
    ]:
        response = await harness.http.post(path, content=body, headers=headers)
        assert response.status_code == 400, (path, response.text)
        assert response.json()["error"]["code"] == "VALIDATION_ERROR"
    listed = (await harness.http.get("/api/instances")).json()["instances"]
    assert [(i["instanceId"], i["status"]) for i in listed] == [(created["instanceId"], "creating")]
