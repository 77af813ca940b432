"""/health from real checks, /metrics and /api/metrics from real traffic, logs without secrets."""

from __future__ import annotations

import io
from datetime import datetime
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from novita_gpu.kit.db import Database
from novita_gpu.kit.serving import free_port
from novita_gpu.observability.logging import configure_logging
from tests.harness import NOVITA_KEY, Harness


async def test_health_reports_real_checks(harness: Harness) -> None:
    await harness.create()
    await harness.tick()
    response = await harness.http.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "healthy" and body["mode"] == "novita" and body["uptime"] >= 0
    services = body["services"]
    assert services["database"]["status"] == "up" and services["database"]["latencyMs"] >= 0
    assert services["novitaApi"]["status"] == "up" and services["novitaApi"]["recentCalls"] > 0
    assert services["cache"] == {"status": "up", "backend": "memory"}
    assert services["webhooks"]["status"] == "up"


async def test_health_is_degraded_when_novita_fails(harness: Harness) -> None:
    await harness.create()  # the catalog is now cached; the worker's calls below fail
    harness.faults(server_error_rate=1.0)
    for _ in range(3):
        await harness.tick()
    body = (await harness.http.get("/health")).json()
    assert body["services"]["novitaApi"]["status"] in ("down", "degraded")
    assert body["status"] == "degraded"


async def test_health_is_degraded_when_redis_is_down(tmp_path: Path) -> None:
    harness = await Harness(tmp_path, redis_url=f"redis://127.0.0.1:{free_port()}/0").start()
    try:
        products = await harness.http.get("/api/products")
        assert products.status_code == 200  # served without the cache
        body = (await harness.http.get("/health")).json()
        assert body["services"]["cache"]["status"] == "degraded"
        assert body["status"] == "degraded"
        assert (await harness.http.get("/api/cache/stats")).json()["degraded"] is True
    finally:
        await harness.stop()


async def test_health_is_unhealthy_without_the_store(harness: Harness) -> None:
    await harness.services.db.dispose()
    unreachable = Database(f"postgresql+asyncpg://nobody@127.0.0.1:{free_port()}/none")
    harness.services.db = unreachable
    harness.services.dispatcher.db = unreachable
    response = await harness.http.get("/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unhealthy" and body["services"]["database"]["status"] == "down"


async def test_prometheus_metrics_cover_requests_upstream_and_instances(harness: Harness) -> None:
    created = await harness.create()
    await harness.until_status(created["instanceId"], "ready")
    await harness.http.get(f"/api/instances/{created['instanceId']}")
    await harness.http.get("/api/instances/inst_unknown")
    response = await harness.http.get("/metrics")
    assert response.status_code == 200
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    routes = {s.labels.get("route") for s in families["http_requests"].samples}
    assert "/api/instances/{instance_id}" in routes
    assert not any(r and "inst_" in r for r in routes)  # templates, never raw ids
    upstream = {s.labels["endpoint"] for s in families["upstream_calls"].samples if "endpoint" in s.labels}
    assert {"instances.create", "instances.list"} <= upstream
    instances = {s.labels["status"]: s.value for s in families["instances"].samples}
    assert instances["ready"] == 1
    assert sum(s.value for s in families["instance_ready_seconds"].samples if s.name.endswith("_count")) == 1


async def test_json_metrics_give_percentiles(harness: Harness) -> None:
    for _ in range(5):
        await harness.http.get("/api/instances")
    body = (await harness.http.get("/api/metrics")).json()
    assert body["requests"]["total"] >= 5
    assert body["latency"]["p50"] is not None and body["latency"]["p99"] >= body["latency"]["p50"]
    assert "byStatus" in body["instances"]


async def test_logs_never_contain_secrets(tmp_path: Path) -> None:
    stream = io.StringIO()
    harness = await Harness(tmp_path, webhook_secret="whsec_dGVzdHNlY3JldHRlc3RzZWNyZXQ=", log_level="DEBUG").start()
    configure_logging("DEBUG", "json", stream=stream)
    try:
        harness.faults(rate_limit_rate=0.5, retry_after_seconds=0)
        created = await harness.create(envs=[{"key": "HF_TOKEN", "value": "hf_value_that_is_secret"}])
        await harness.until_status(created["instanceId"], "ready")
        await harness.http.get("/api/instances", headers={"Authorization": "Bearer some-client-key-123"})
    finally:
        await harness.stop()
    output = stream.getvalue()
    assert "reconcile_created" in output and "request" in output
    for secret in (NOVITA_KEY, "hf_value_that_is_secret", "dGVzdHNlY3JldHRlc3RzZWNyZXQ", "some-client-key-123"):
        assert secret not in output


async def test_ready_histograms_measure_create_to_ready_and_running_to_ready(harness: Harness) -> None:
    """instance_ready_seconds is create-to-ready, as its help says (it was running-to-ready); the probe's
    part has its own histogram, and a restart's readiness does not count as a create's."""
    created = await harness.create()
    ready = await harness.until_status(created["instanceId"], "ready")
    stopped = await harness.http.post(f"/api/instances/{created['instanceId']}/stop")
    assert stopped.status_code == 202
    await harness.until_status(created["instanceId"], "stopped")
    await harness.http.post(f"/api/instances/{created['instanceId']}/start", json={})
    await harness.until_status(created["instanceId"], "ready")

    families = {f.name: f for f in text_string_to_metric_families((await harness.http.get("/metrics")).text)}

    def sample(family: str, suffix: str) -> float:
        return next(s.value for s in families[family].samples if s.name == family + suffix)

    created_at, started_at, ready_at = (
        datetime.fromisoformat(ready[key].replace("Z", "+00:00")) for key in ("createdAt", "startedAt", "readyAt")
    )
    assert sample("instance_ready_seconds", "_count") == 1
    assert sample("instance_ready_seconds", "_sum") == pytest.approx((ready_at - created_at).total_seconds())
    assert sample("instance_running_to_ready_seconds", "_count") == 2
    assert sample("instance_running_to_ready_seconds", "_sum") >= (ready_at - started_at).total_seconds()
    assert "create" in next(f for f in families.values() if f.name == "instance_ready_seconds").documentation
