"""Metrics: Prometheus exposition that parses, and a JSON summary with exact percentiles."""

from __future__ import annotations

import pytest
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from novita_gpu.observability.metrics import Metrics


def _samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def test_request_percentiles_are_exact_for_known_samples() -> None:
    metrics = Metrics()
    for ms in range(1, 101):
        metrics.observe_request("GET", "/api/instances/{instance_id}", 200, ms / 1000)
    metrics.observe_request("POST", "/api/instances", 201, 0.2)
    metrics.observe_request("GET", "unmatched", 404, 0.001)

    summary = metrics.summary()

    requests = summary["requests"]
    assert requests["total"] == 102
    assert requests["byStatus"] == {"200": 100, "201": 1, "404": 1}
    assert requests["byRoute"]["/api/instances/{instance_id}"] == {"count": 100, "p50": 50.0, "p95": 95.0, "p99": 99.0}
    assert requests["byRoute"]["/api/instances"] == {"count": 1, "p50": 200.0, "p95": 200.0, "p99": 200.0}
    # 102 samples sorted: 1, 1, 2, ..., 100, 200; nearest rank 51, 97, 101.
    assert summary["latency"] == {"p50": 50.0, "p95": 96.0, "p99": 100.0}


def test_the_percentile_window_is_bounded_to_recent_samples_while_counts_stay_total() -> None:
    metrics = Metrics(window=10)
    for ms in range(1, 101):
        metrics.observe_request("GET", "/health", 200, ms / 1000)

    route = metrics.summary()["requests"]["byRoute"]["/health"]

    assert route == {"count": 100, "p50": 95.0, "p95": 100.0, "p99": 100.0}


def test_empty_summary_has_zeros_and_null_percentiles() -> None:
    summary = Metrics().summary()

    assert summary["requests"] == {"total": 0, "byStatus": {}, "byRoute": {}}
    assert summary["latency"] == {"p50": None, "p95": None, "p99": None}
    assert summary["upstream"]["calls"] == 0
    assert summary["readiness"] == {"count": 0, "p50": None, "p95": None, "p99": None}
    assert summary["cache"]["hitRatio"] is None


def test_upstream_calls_errors_and_latency_by_endpoint() -> None:
    metrics = Metrics()
    observe = metrics.observe_upstream  # the Novita client's observer callback
    for seconds in (0.1, 0.2, 0.3, 0.4):
        observe("GET /v1/gpus", "ok", seconds)
    observe("GET /v1/gpus", "server_error", 1.0)
    observe("POST /v1/gpu/instance/create", "rate_limited", 0.05)

    upstream = metrics.summary()["upstream"]

    assert (upstream["calls"], upstream["errors"]) == (6, 2)
    assert upstream["byOutcome"] == {"server_error": 1, "ok": 4, "rate_limited": 1}
    assert upstream["byEndpoint"]["GET /v1/gpus"] == {
        "calls": 5,
        "errors": 1,
        "p50": 300.0,
        "p95": 1000.0,
        "p99": 1000.0,
    }
    assert upstream["byEndpoint"]["POST /v1/gpu/instance/create"]["errors"] == 1
    samples = _samples(metrics)
    assert samples[("upstream_calls_total", (("endpoint", "GET /v1/gpus"), ("outcome", "ok")))] == 4
    assert samples[("upstream_call_duration_seconds_count", (("endpoint", "GET /v1/gpus"),))] == 5


def test_instance_gauge_drops_statuses_that_are_no_longer_reported() -> None:
    metrics = Metrics()
    metrics.set_instance_counts({"ready": 2, "creating": 1})
    metrics.set_instance_counts({"ready": 3, "stopped": 1})

    assert metrics.summary()["instances"] == {"total": 4, "byStatus": {"creating": 0, "ready": 3, "stopped": 1}}
    assert _samples(metrics)[("instances", (("status", "creating"),))] == 0


def test_readiness_webhooks_autostop_and_cache_figures() -> None:
    metrics = Metrics()
    for seconds in (30.0, 60.0, 90.0):
        metrics.observe_ready(seconds, seconds / 10)
    metrics.observe_webhook_delivery("delivered", lag_seconds=0.5)
    metrics.observe_webhook_delivery("delivered", lag_seconds=1.5)
    metrics.observe_webhook_delivery("failed_attempt")
    metrics.observe_webhook_delivery("gone")
    metrics.set_webhook_backlog(3, 42.25)
    metrics.observe_autostop("stopped")
    metrics.observe_autostop("would_stop")
    metrics.observe_autostop("would_stop")
    for hit in (True, True, True, False):
        metrics.observe_cache("products", hit)
    metrics.observe_cache("templates", False)

    summary = metrics.summary()

    assert summary["readiness"] == {"count": 3, "p50": 60.0, "p95": 90.0, "p99": 90.0}
    assert summary["webhooks"] == {
        "delivered": 2,
        "failedAttempts": 1,
        "gone": 1,
        "expired": 0,
        "backlog": 3,
        "oldestPendingSeconds": 42.25,
        "lag": {"count": 2, "p50": 0.5, "p95": 1.5, "p99": 1.5},
    }
    assert summary["autoStop"] == {"stopped": 1, "deleted": 0, "wouldStop": 2, "failed": 0}
    assert summary["cache"] == {
        "hits": 3,
        "misses": 2,
        "hitRatio": 0.6,
        "byCache": {
            "products": {"hits": 3, "misses": 1, "hitRatio": 0.75},
            "templates": {"hits": 0, "misses": 1, "hitRatio": 0.0},
        },
    }
    samples = _samples(metrics)
    assert samples[("webhook_backlog", ())] == 3
    assert samples[("webhook_deliveries_total", (("outcome", "delivered"),))] == 2
    assert samples[("autostop_actions_total", (("action", "would_stop"),))] == 2
    assert samples[("cache_lookups_total", (("cache", "products"), ("result", "hit")))] == 3
    assert samples[("instance_ready_seconds_count", ())] == 3


def test_unknown_outcomes_are_refused_to_keep_label_sets_closed() -> None:
    metrics = Metrics()
    with pytest.raises(ValueError):
        metrics.observe_webhook_delivery("maybe")
    with pytest.raises(ValueError):
        metrics.observe_autostop("paused")


def test_several_instances_in_one_process_do_not_share_series() -> None:
    first, second = Metrics(), Metrics()
    first.observe_request("GET", "/health", 200, 0.01)

    assert first.summary()["requests"]["total"] == 1
    assert second.summary()["requests"]["total"] == 0
    assert ("http_requests_total", (("method", "GET"), ("route", "/health"), ("status", "200"))) in _samples(first)


def test_rendered_text_is_exactly_what_prometheus_client_renders() -> None:
    """The exposition builds each series' text once; it must stay byte for byte prometheus-client's,
    escaping included, as series appear and values change between scrapes."""
    metrics = Metrics()
    metrics.observe_request("GET", "/api/instances/{id}", 200, 0.003)
    metrics.observe_cache('odd "name" with \\ and\nnewline', hit=True)
    metrics.set_instance_counts({"ready": 2})
    first, _ = metrics.render()
    assert first == generate_latest(metrics.registry)
    metrics.observe_request("GET", "/api/instances/{id}", 200, 7.5)
    metrics.observe_request("POST", "/api/instances", 409, 0.02)
    metrics.observe_upstream("GET /gpu/instances", "server_error", 0.4)
    metrics.observe_ready(42.0, 4.2)
    metrics.observe_webhook_delivery("delivered", lag_seconds=0.2)
    metrics.set_webhook_backlog(3, 12.5)
    metrics.observe_autostop("stopped")
    metrics.set_instance_counts({"creating": 1})
    second, _ = metrics.render()
    assert second == generate_latest(metrics.registry) and second != first
