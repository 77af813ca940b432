"""Prometheus metrics plus the JSON summary behind GET /api/metrics.

Each `Metrics` owns its registry, so several apps (and tests) in one process never collide.
Counters and histograms feed /metrics; quantiles in the summary come from a bounded window of the
most recent observations per series (Prometheus histograms only give bucket estimates).
Recording is on the hot path of every request, so label children are cached and a record is a
handful of dict lookups, two prometheus updates and a deque append.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, cast

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import Metric
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

_format_value = cast(Callable[[float], str], floatToGoString)  # untyped upstream

# No `*_created` series: they carry each series' start time, which Prometheus does not need (counter
# resets are detected from the values), and they were a fifth of the text every scrape renders.
disable_created_metrics()  # type: ignore[no-untyped-call]

DEFAULT_WINDOW = 2048
UNMATCHED_ROUTE = "unmatched"
UPSTREAM_OK = "ok"
WEBHOOK_OUTCOMES = frozenset({"delivered", "failed_attempt", "gone", "expired"})
AUTOSTOP_ACTIONS = frozenset({"stopped", "deleted", "would_stop", "failed"})
RETENTION_KINDS = frozenset({"instances", "webhook_deliveries", "idempotency_keys", "audit_events"})

_READY_BUCKETS = (5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0)
_LAG_BUCKETS = (0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 21600.0, 86400.0)
_QUANTILES = (50, 95, 99)


def percentiles(samples: Sequence[float], scale: float = 1.0) -> dict[str, float | None]:
    """Nearest-rank p50/p95/p99 (each is an observed value), times `scale`; None when empty."""
    if not samples:
        return {f"p{q}": None for q in _QUANTILES}
    ordered = sorted(samples)
    n = len(ordered)
    return {f"p{q}": round(ordered[max(math.ceil(q / 100 * n) - 1, 0)] * scale, 3) for q in _QUANTILES}


class _Window:
    """The last `size` observations of one series, safe to read while others append."""

    __slots__ = ("_lock", "_samples")

    def __init__(self, size: int) -> None:
        self._samples: deque[float] = deque(maxlen=size)
        self._lock = threading.Lock()

    def add(self, value: float) -> None:
        with self._lock:
            self._samples.append(value)

    def snapshot(self) -> list[float]:
        with self._lock:
            return list(self._samples)


def _values(metric: MetricWrapperBase, suffix: str = "") -> Iterable[tuple[dict[str, str], float]]:
    """(labels, value) of every child of `metric`; `suffix` picks e.g. "_total" or "_count"."""
    for family in metric.collect():
        wanted = family.name + suffix
        for sample in family.samples:
            if sample.name == wanted:
                yield sample.labels, sample.value


def _counts(counter: MetricWrapperBase, label: str, names: dict[str, str]) -> dict[str, int]:
    """A labelled counter's totals by `label`, under `names` (label value -> key), 0 for a value not counted yet."""
    totals = {labels[label]: int(value) for labels, value in _values(counter, "_total")}
    return {name: totals.get(value, 0) for value, name in names.items()}


class _TextExposition:
    """prometheus-client's text format (what `generate_latest` gives), each series' name and labels
    formatted once: they never change, and formatting them again on every scrape was half of its CPU.
    Counters, gauges and histograms only, the kinds `Metrics` registers."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry
        self._headers: dict[str, str] = {}
        self._prefixes: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}

    def render(self) -> bytes:
        out: list[str] = []
        headers, prefixes = self._headers, self._prefixes
        for family in self._registry.collect():
            header = headers.get(family.name)
            if header is None:
                header = headers[family.name] = _family_header(family)
            out.append(header)
            for sample in family.samples:
                key = (sample.name, tuple(sample.labels.items()))
                prefix = prefixes.get(key)
                if prefix is None:
                    prefix = prefixes[key] = _series_prefix(sample)
                out += (prefix, _format_value(sample.value), "\n")
        return "".join(out).encode()


def _family_header(family: Metric) -> str:
    if family.type not in ("counter", "gauge", "histogram"):
        raise ValueError(f"metric type {family.type!r} is not rendered")
    name = family.name + "_total" if family.type == "counter" else family.name
    help_text = family.documentation.replace("\\", r"\\").replace("\n", r"\n")
    return f"# HELP {name} {help_text}\n# TYPE {name} {family.type}\n"


def _series_prefix(sample: Sample) -> str:
    if not sample.labels:
        return sample.name + " "
    labels = ",".join(f'{key}="{_label_value(value)}"' for key, value in sorted(sample.labels.items()))
    return f"{sample.name}{{{labels}}} "


def _label_value(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _ratio(hits: float, misses: float) -> float | None:
    total = hits + misses
    return round(hits / total, 4) if total else None


class Metrics:
    """All of the service's metrics. Create one per app and pass it to whoever records."""

    def __init__(self, window: int = DEFAULT_WINDOW) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._window_size = window
        r = self.registry
        self._http_requests = Counter(
            "http_requests_total", "HTTP requests answered", ["method", "route", "status"], registry=r
        )
        self._http_duration = Histogram(
            "http_request_duration_seconds", "HTTP request duration", ["method", "route"], registry=r
        )
        self._upstream_calls = Counter(
            "upstream_calls_total", "Calls to the Novita API", ["endpoint", "outcome"], registry=r
        )
        self._upstream_duration = Histogram(
            "upstream_call_duration_seconds", "Novita API call duration", ["endpoint"], registry=r
        )
        self._instances = Gauge("instances", "Instances by public status", ["status"], registry=r)
        self._ready = Histogram(
            "instance_ready_seconds",
            "Time from create to ready, for each new instance",
            buckets=_READY_BUCKETS,
            registry=r,
        )
        self._running_to_ready = Histogram(
            "instance_running_to_ready_seconds",
            "Time from Novita reporting the instance running to every http port answering, each time",
            buckets=_READY_BUCKETS,
            registry=r,
        )
        self._webhook_deliveries = Counter(
            "webhook_deliveries_total", "Webhook delivery attempts by outcome", ["outcome"], registry=r
        )
        self._webhook_lag = Histogram(
            "webhook_delivery_lag_seconds", "Time from event to delivery", buckets=_LAG_BUCKETS, registry=r
        )
        self._webhook_backlog = Gauge("webhook_backlog", "Webhook deliveries pending", registry=r)
        self._webhook_oldest = Gauge(
            "webhook_oldest_pending_seconds", "Age of the oldest pending webhook delivery", registry=r
        )
        self._autostop = Counter("autostop_actions_total", "Auto-stop actions taken", ["action"], registry=r)
        # Spot recovery (docs/spot.md): reclaims seen, recoveries ended by path and outcome, reclaim to ready.
        self._reclaims = Counter("reclaims_total", "Spot reclaims seen by the reconciler", registry=r)
        self._recoveries = Counter(
            "recoveries_total", "Spot recoveries ended, by path and outcome", ["path", "outcome"], registry=r
        )
        self._reclaim_to_ready = Histogram(
            "reclaim_to_ready_seconds",
            "Time from a spot reclaim seen to the recovered instance ready",
            buckets=_READY_BUCKETS,
            registry=r,
        )
        # Warm pools (docs/pools.md): claims by where the instance came from.
        self._pool_claims = Counter(
            "pool_claims_total", "Warm pool claims, by source: ready, stopped, warming, cold", ["source"], registry=r
        )
        self._cache = Counter("cache_lookups_total", "Cache lookups", ["cache", "result"], registry=r)
        self._retention = Counter("retention_deleted_total", "Rows deleted by history retention", ["kind"], registry=r)
        # Spend by API key (its owner id, never the key): few series, one per key.
        self._cost_month = Gauge(
            "cost_month_to_date_usd",
            "What Novita billed this calendar month (UTC), by API key",
            ["api_key"],
            registry=r,
        )
        self._cost_rate = Gauge(
            "cost_rate_usd_per_hour",
            "What the instances and volumes Novita bills now cost per hour, by API key",
            ["api_key"],
            registry=r,
        )
        self._budget_limit = Gauge("budget_monthly_limit_usd", "Monthly budget, by API key", ["api_key"], registry=r)

        # Cached label children: labels() takes a lock and builds a tuple on every call.
        self._request_children: dict[tuple[str, str, int], tuple[Any, Any, _Window]] = {}
        self._upstream_children: dict[tuple[str, str], tuple[Any, Any, _Window]] = {}
        self._cache_children: dict[tuple[str, bool], Any] = {}
        self._route_windows: dict[str, _Window] = {}
        self._endpoint_windows: dict[str, _Window] = {}
        self._latency = _Window(window)
        self._ready_window = _Window(window)
        self._lag_window = _Window(window)
        self._children_lock = threading.Lock()
        self._exposition = _TextExposition(self.registry)

    # -- recording -------------------------------------------------------------------------------

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """One answered HTTP request; `route` is the route template (or "unmatched"), never a raw path."""
        key = (method, route, status)
        children = self._request_children.get(key)
        if children is None:
            children = self._new_request_children(method, route, status)
        counter, histogram, route_window = children
        counter.inc()
        histogram.observe(seconds)
        route_window.add(seconds)
        self._latency.add(seconds)

    def _new_request_children(self, method: str, route: str, status: int) -> tuple[Any, Any, _Window]:
        with self._children_lock:
            window = self._route_windows.setdefault(route, _Window(self._window_size))
            children = (
                self._http_requests.labels(method, route, str(status)),
                self._http_duration.labels(method, route),
                window,
            )
            self._request_children[(method, route, status)] = children
            return children

    def observe_upstream(self, endpoint: str, outcome: str, seconds: float) -> None:
        """One call to Novita (the client's observer callback). Outcome "ok" is success."""
        children = self._upstream_children.get((endpoint, outcome))
        if children is None:
            with self._children_lock:
                window = self._endpoint_windows.setdefault(endpoint, _Window(self._window_size))
                children = (
                    self._upstream_calls.labels(endpoint, outcome),
                    self._upstream_duration.labels(endpoint),
                    window,
                )
                self._upstream_children[(endpoint, outcome)] = children
        counter, histogram, window = children
        counter.inc()
        histogram.observe(seconds)
        window.add(seconds)

    def set_instance_counts(self, counts: Mapping[str, int]) -> None:
        """Set the instances-by-status gauge; statuses seen before but absent now drop to 0."""
        for labels, _ in list(_values(self._instances)):
            if labels["status"] not in counts:
                self._instances.labels(labels["status"]).set(0)
        for status, count in counts.items():
            self._instances.labels(status).set(count)

    def observe_ready(self, since_create: float | None, since_running: float) -> None:
        """An instance became ready `since_running` seconds after Novita said running, and, if it is a new
        instance's first readiness, `since_create` seconds after it was created."""
        self._running_to_ready.observe(since_running)
        if since_create is not None:
            self._ready.observe(since_create)
            self._ready_window.add(since_create)

    def observe_webhook_delivery(self, outcome: str, lag_seconds: float | None = None) -> None:
        """One delivery attempt: delivered | failed_attempt | gone | expired; lag only when delivered."""
        if outcome not in WEBHOOK_OUTCOMES:
            raise ValueError(f"unknown webhook outcome {outcome!r}")
        self._webhook_deliveries.labels(outcome).inc()
        if lag_seconds is not None:
            self._webhook_lag.observe(lag_seconds)
            self._lag_window.add(lag_seconds)

    def set_webhook_backlog(self, pending: int, oldest_pending_seconds: float) -> None:
        """Deliveries still waiting and the age of the oldest one (0 when none)."""
        self._webhook_backlog.set(pending)
        self._webhook_oldest.set(oldest_pending_seconds)

    def observe_autostop(self, action: str) -> None:
        """One auto-stop decision carried out: stopped | deleted | would_stop (dry run) | failed."""
        if action not in AUTOSTOP_ACTIONS:
            raise ValueError(f"unknown auto-stop action {action!r}")
        self._autostop.labels(action).inc()

    def observe_reclaim(self) -> None:
        self._reclaims.inc()

    def observe_recovery(self, path: str, outcome: str, reclaim_to_ready: float | None = None) -> None:
        """A recovery ended: path migrate | recreate, outcome recovered | failed | abandoned | gave_up."""
        self._recoveries.labels(path, outcome).inc()
        if reclaim_to_ready is not None:
            self._reclaim_to_ready.observe(reclaim_to_ready)

    def observe_claim(self, source: str) -> None:
        """A claim answered: source ready | stopped | warming | cold."""
        self._pool_claims.labels(source).inc()

    def observe_retention(self, kind: str, deleted: int) -> None:
        """Rows of one kind deleted by a retention sweep: instances | webhook_deliveries | idempotency_keys |
        audit_events."""
        if kind not in RETENTION_KINDS:
            raise ValueError(f"unknown retention kind {kind!r}")
        self._retention.labels(kind).inc(deleted)

    def set_costs(self, spend: Mapping[str, tuple[float, float]], limits: Mapping[str, float]) -> None:
        """Month-to-date spend and burn rate per key, and budget limits; keys seen before but gone drop to 0
        (spend) or disappear (a budget removed)."""
        for gauge, values in (
            (self._cost_month, {k: v[0] for k, v in spend.items()}),
            (self._cost_rate, {k: v[1] for k, v in spend.items()}),
        ):
            for labels, _ in list(_values(gauge)):
                if labels["api_key"] not in values:
                    gauge.labels(labels["api_key"]).set(0)
            for key, value in values.items():
                gauge.labels(key).set(round(value, 6))
        for labels, _ in list(_values(self._budget_limit)):
            if labels["api_key"] not in limits:
                self._budget_limit.remove(labels["api_key"])
        for key, limit in limits.items():
            self._budget_limit.labels(key).set(limit)

    def observe_cache(self, cache: str, hit: bool) -> None:
        """One lookup in the named cache."""
        child = self._cache_children.get((cache, hit))
        if child is None:
            child = self._cache.labels(cache, "hit" if hit else "miss")
            self._cache_children[(cache, hit)] = child
        child.inc()

    # -- reading ---------------------------------------------------------------------------------

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition and its content type."""
        return self._exposition.render(), CONTENT_TYPE_LATEST

    def summary(self) -> dict[str, Any]:
        """The JSON document of GET /api/metrics. Request/upstream times in ms, others in seconds."""
        return {
            "requests": self._requests_summary(),
            "latency": percentiles(self._latency.snapshot(), 1000.0),
            "upstream": self._upstream_summary(),
            "instances": self._instances_summary(),
            "readiness": {
                "count": int(sum(v for _, v in _values(self._ready, "_count"))),
                **percentiles(self._ready_window.snapshot()),
            },
            "webhooks": self._webhooks_summary(),
            "autoStop": self._autostop_summary(),
            "cache": self._cache_summary(),
            "retention": self._retention_summary(),
            "spot": {
                "reclaims": int(sum(v for _, v in _values(self._reclaims, "_total"))),
                "recoveries": {
                    f"{labels['path']}:{labels['outcome']}": int(value)
                    for labels, value in _values(self._recoveries, "_total")
                },
            },
        }

    def _requests_summary(self) -> dict[str, Any]:
        by_status: dict[str, int] = {}
        by_route_count: dict[str, int] = {}
        for labels, value in _values(self._http_requests, "_total"):
            by_status[labels["status"]] = by_status.get(labels["status"], 0) + int(value)
            by_route_count[labels["route"]] = by_route_count.get(labels["route"], 0) + int(value)
        with self._children_lock:
            windows = dict(self._route_windows)
        by_route = {
            route: {"count": count, **percentiles(windows[route].snapshot(), 1000.0)}
            for route, count in sorted(by_route_count.items())
        }
        return {"total": sum(by_status.values()), "byStatus": dict(sorted(by_status.items())), "byRoute": by_route}

    def _upstream_summary(self) -> dict[str, Any]:
        calls: dict[str, int] = {}
        errors: dict[str, int] = {}
        by_outcome: dict[str, int] = {}
        for labels, value in _values(self._upstream_calls, "_total"):
            endpoint, outcome = labels["endpoint"], labels["outcome"]
            calls[endpoint] = calls.get(endpoint, 0) + int(value)
            errors[endpoint] = errors.get(endpoint, 0) + (0 if outcome == UPSTREAM_OK else int(value))
            by_outcome[outcome] = by_outcome.get(outcome, 0) + int(value)
        with self._children_lock:
            windows = dict(self._endpoint_windows)
        by_endpoint = {
            endpoint: {
                "calls": count,
                "errors": errors[endpoint],
                **percentiles(windows[endpoint].snapshot(), 1000.0),
            }
            for endpoint, count in sorted(calls.items())
        }
        return {
            "calls": sum(calls.values()),
            "errors": sum(errors.values()),
            "byOutcome": dict(sorted(by_outcome.items())),
            "byEndpoint": by_endpoint,
        }

    def _instances_summary(self) -> dict[str, Any]:
        by_status = {labels["status"]: int(value) for labels, value in _values(self._instances)}
        return {"total": sum(by_status.values()), "byStatus": dict(sorted(by_status.items()))}

    def _webhooks_summary(self) -> dict[str, Any]:
        names = {"delivered": "delivered", "failed_attempt": "failedAttempts", "gone": "gone", "expired": "expired"}
        backlog = next(iter(_values(self._webhook_backlog)), ({}, 0.0))[1]
        oldest = next(iter(_values(self._webhook_oldest)), ({}, 0.0))[1]
        return {
            **_counts(self._webhook_deliveries, "outcome", names),
            "backlog": int(backlog),
            "oldestPendingSeconds": round(oldest, 3),
            "lag": {
                "count": int(sum(v for _, v in _values(self._webhook_lag, "_count"))),
                **percentiles(self._lag_window.snapshot()),
            },
        }

    def _autostop_summary(self) -> dict[str, int]:
        names = {"stopped": "stopped", "deleted": "deleted", "would_stop": "wouldStop", "failed": "failed"}
        return _counts(self._autostop, "action", names)

    def _retention_summary(self) -> dict[str, int]:
        names = {
            "instances": "instances",
            "webhook_deliveries": "webhookDeliveries",
            "idempotency_keys": "idempotencyKeys",
            "audit_events": "auditEvents",
        }
        return _counts(self._retention, "kind", names)

    def _cache_summary(self) -> dict[str, Any]:
        per_cache: dict[str, dict[str, int]] = {}
        for labels, value in _values(self._cache, "_total"):
            counts = per_cache.setdefault(labels["cache"], {"hits": 0, "misses": 0})
            counts["hits" if labels["result"] == "hit" else "misses"] += int(value)
        hits = sum(c["hits"] for c in per_cache.values())
        misses = sum(c["misses"] for c in per_cache.values())
        return {
            "hits": hits,
            "misses": misses,
            "hitRatio": _ratio(hits, misses),
            "byCache": {
                name: {**c, "hitRatio": _ratio(c["hits"], c["misses"])} for name, c in sorted(per_cache.items())
            },
        }
