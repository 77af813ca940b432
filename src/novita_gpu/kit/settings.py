"""All configuration in one place: environment variables (and an optional .env file).

Every variable is documented in README.md and docs/configuration.md with its default.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

BillingMode = Literal["onDemand", "spot"]
AutoStopSignal = Literal["lastUsed", "gpu", "both"]
AutoStopAction = Literal["stop", "delete"]

DEFAULT_NOVITA_BASE_URL = "https://api.novita.ai/gpu-instance/openapi"
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./data/novita-gpu.db"


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


_SQLITE_EXAMPLE = "sqlite:///./data/novita-gpu.db"
_POSTGRES_EXAMPLE = "postgresql://user:password@host:5432/db"


def normalize_database_url(url: str) -> str:
    """The store URL for the async drivers we use (asyncpg, aiosqlite), from any spelling people paste:
    `postgres://` (Heroku, Supabase, Render...), `postgresql://`, `postgresql+psycopg://`, `sqlite:///path`,
    `sqlite+pysqlite:///path`. Only the scheme changes (and libpq's `sslmode` becomes asyncpg's `ssl`), so
    the rest, password included, is used exactly as given. Messages never repeat the URL: it may hold one."""
    url = url.strip()
    scheme, sep, rest = url.partition("://")
    dialect = scheme.split("+", 1)[0].lower()
    if not sep or not dialect:
        raise ValueError(f"not a database URL: expected {_POSTGRES_EXAMPLE} or {_SQLITE_EXAMPLE}")
    if dialect in ("postgres", "postgresql"):
        base, qmark, query = rest.partition("?")
        query = re.sub(r"(^|&)sslmode=", r"\1ssl=", query)
        return f"postgresql+asyncpg://{base}{qmark}{query}"
    if dialect == "sqlite":
        path = rest[1:].split("?", 1)[0] if rest.startswith("/") else ""
        if path in ("", ":memory:"):
            raise ValueError(
                "a SQLite store must be a file: three slashes before a relative path "
                f"({_SQLITE_EXAMPLE}), four before an absolute one (sqlite:////var/lib/novita-gpu/store.db)"
            )
        return f"sqlite+aiosqlite:///{rest[1:]}"
    raise ValueError(
        f"unsupported database {scheme!r}: use PostgreSQL ({_POSTGRES_EXAMPLE}) or SQLite ({_SQLITE_EXAMPLE})"
    )


class InsecureConfiguration(ValueError):
    """The settings would expose the service without protection; the message says how to fix it."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True)

    # Where we listen (the CLI flags override these).
    host: str = "127.0.0.1"
    port: int = 3000

    # Upstream: with no key the built-in emulator is used.
    novita_api_key: SecretStr | None = None
    novita_api_base_url: str = DEFAULT_NOVITA_BASE_URL
    novita_timeout_seconds: float = 15.0
    novita_retry_deadline_seconds: float = 30.0
    emulator_speed: float = Field(default=1.0, gt=0)
    emulator_port: int = 0  # 0: a free loopback port chosen at start-up
    emulator_seed: int = 42
    # Where the built-in emulator keeps its account (default: next to a SQLite store, else data/emulator.db).
    emulator_state: Path | None = None

    # Store.
    database_url: str = DEFAULT_DATABASE_URL

    # Access.
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    # Keys that may also set (and read) other keys' budgets; each is an API key of its own too.
    admin_api_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    allow_unauthenticated: bool = False
    # The operator's credential for GET /metrics, which shows every key's spend: Prometheus sends it as
    # `Authorization: Bearer <token>`. An admin key reads /metrics too; with no keys at all, anybody.
    metrics_token: SecretStr | None = None
    # Keys kept in the store (docs/teams.md): a rotated key's old secret keeps working this long, and the
    # audit trail is kept this many days.
    key_rotation_grace_seconds: float = Field(default=86400.0, ge=0)
    audit_retention_days: float = Field(default=365.0, ge=0)
    # Host names answered besides loopback ones (empty: any name with API keys, loopback only without).
    allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    max_body_bytes: int = 64 * 1024
    # What one client connection may hold (kit/connections.py, docs/deployment.md): its request headers
    # complete within this many seconds (from a request's first byte, or the connection's opening), its
    # socket left full by a client that does not read for this long at most (then the connection is
    # reset: an event stream frees its slot), and connections open at once.
    header_read_timeout_seconds: float = Field(default=10.0, gt=0)
    send_timeout_seconds: float = Field(default=30.0, gt=0)
    max_connections: int = Field(default=1000, ge=1)

    # Instance defaults and lifecycle limits.
    default_billing_mode: BillingMode = "onDemand"
    default_rootfs_gb: int = 60
    capacity_wait_seconds: float = Field(
        default=600.0, validation_alias=AliasChoices("CAPACITY_WAIT_SECONDS", "CAPACITY_WAIT")
    )
    startup_timeout_seconds: float = 900.0
    # What a reclaim of a spot instance leads to, unless its create said otherwise (docs/spot.md): migrate
    # it (then recreate it if that fails), recreate it, or leave it stopped; at most this many recoveries
    # per record in a rolling 24 h; on-demand when no spot capacity is left anywhere.
    spot_on_reclaim: Literal["migrate", "recreate", "stop"] = "migrate"
    spot_max_recoveries: int = Field(default=3, ge=0, le=100)
    spot_fallback_to_on_demand: bool = False
    # Warm pools (docs/pools.md): what a stopped member's kept disk costs (Novita's API gives no price for
    # it: set it from your bill), and how often the keeper looks at every pool when nothing wakes it.
    stopped_disk_usd_per_gb_month: float = Field(default=0.10, ge=0, le=100)
    pool_check_seconds: float = Field(default=5.0, gt=0)
    health_check_timeout_seconds: float = 600.0
    # How long a stop or a delete may take at Novita before the instance ends `failed` (or, for a stop
    # Novita refuses because the instance never finished booting, is deleted instead).
    action_timeout_seconds: float = 600.0
    # On SIGTERM, how long background work in flight (upstream calls, webhook deliveries) may take to finish.
    shutdown_grace_seconds: float = 15.0
    probe_timeout_seconds: float = 3.0
    probe_interval_seconds: float = 0.25
    reconcile_fast_seconds: float = 0.5
    reconcile_slow_seconds: float = 15.0
    lease_seconds: float = 30.0
    # PostgreSQL connections a process keeps open, and as many more on demand: 3 replicas at the default
    # take at most 60 of PostgreSQL's default max_connections of 100 (at 20 + 20, three replicas ran out).
    database_pool_size: int = Field(default=10, ge=1, le=500)
    catalog_cache_ttl_seconds: float = 300.0
    idempotency_ttl_seconds: float = 24 * 3600.0
    # How long a cached read may lag another replica's writes (None: exact on SQLite, 1 s on PostgreSQL).
    read_cache_seconds: float | None = None

    # Webhooks.
    webhook_url: str | None = None
    webhook_secret: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    webhook_max_age_seconds: float = Field(
        default=24 * 3600.0, validation_alias=AliasChoices("WEBHOOK_MAX_AGE_SECONDS", "WEBHOOK_MAX_AGE")
    )
    webhook_timeout_seconds: float = 5.0
    webhook_allow_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    webhook_allow_networks: Annotated[list[str], NoDecode] = Field(default_factory=list)
    webhook_allow_loopback: bool | None = None  # None: allowed in emulator mode only

    # Event stream (docs/events.md): concurrent streams per API key and replica, keep-alive comment
    # interval, events buffered per stream before a reader too slow to keep up is closed, store poll.
    event_streams_per_key: int = Field(default=20, ge=1)
    event_stream_heartbeat_seconds: float = Field(default=15.0, gt=0)
    event_stream_buffer: int = Field(default=1000, ge=1)
    event_stream_poll_seconds: float = Field(default=0.5, gt=0)

    # Auto-stop.
    auto_stop_enabled: bool = True
    auto_stop_idle_minutes: int = Field(default=60, ge=0)
    auto_stop_check_seconds: float = Field(default=60.0, gt=0)
    # Defaults of an instance's auto-stop policy when its create does not say (docs/autostop.md).
    auto_stop_signal: AutoStopSignal = "lastUsed"
    auto_stop_gpu_idle_below_percent: float = Field(default=5.0, gt=0, le=100)
    auto_stop_action: AutoStopAction = "stop"
    auto_stop_max_runtime_minutes: int = Field(default=0, ge=0)
    # The GPU utilization poller: calls to Novita's metrics API per minute at most, at once at most, and how
    # late Novita's samples are (a window is looked at only once its last minute has come in).
    gpu_poll_calls_per_minute: float = Field(default=120.0, gt=0)
    gpu_poll_concurrency: int = Field(default=4, ge=1)
    gpu_metrics_delay_seconds: float = Field(default=60.0, ge=0)

    # Costs and budgets: how often spend is checked against budgets (it also wakes at the next crossing).
    budget_check_seconds: float = Field(default=60.0, gt=0)

    # History retention (0 days: keep everything forever).
    history_retention_days: float = Field(default=30.0, ge=0)
    retention_check_seconds: float = Field(default=3600.0, gt=0)

    # Cache.
    redis_url: str | None = None
    upstash_redis_rest_url: str | None = None
    upstash_redis_rest_token: SecretStr | None = None

    # Logs.
    log_level: str = "INFO"
    log_format: Literal["json", "console"] = "json"

    # Workers (tests switch them off and drive ticks by hand).
    workers_enabled: bool = True

    @field_validator("api_keys", "admin_api_keys", "webhook_secret", mode="before")
    @classmethod
    def _secret_list(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("allowed_hosts", "webhook_allow_hosts", "webhook_allow_networks", mode="before")
    @classmethod
    def _str_list(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        return normalize_database_url(value)

    @field_validator("novita_api_base_url")
    @classmethod
    def _novita_base_url(cls, value: str) -> str:
        """`api.novita.ai` would fail at the first call, minutes later and far from the cause: refuse it now."""
        url = value.strip().rstrip("/")
        scheme, _, rest = url.partition("://")
        if scheme.lower() not in ("http", "https") or not rest or rest.startswith("/"):
            raise ValueError(f"must start with https:// (or http://) and name a host, like {DEFAULT_NOVITA_BASE_URL}")
        return url

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        if value.upper() not in logging.getLevelNamesMapping():
            raise ValueError("use DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return value

    @field_validator("webhook_allow_networks")
    @classmethod
    def _valid_networks(cls, value: list[str]) -> list[str]:
        for network in value:
            ipaddress.ip_network(network, strict=False)
        return value

    @cached_property
    def emulator_mode(self) -> bool:
        return self.novita_api_key is None or not self.novita_api_key.get_secret_value()

    @property
    def mode(self) -> Literal["emulator", "novita"]:
        return "emulator" if self.emulator_mode else "novita"

    @property
    def loopback_webhooks_allowed(self) -> bool:
        if self.webhook_allow_loopback is not None:
            return self.webhook_allow_loopback
        return self.emulator_mode

    def check_exposure(self, host: str) -> None:
        """Refuse to listen beyond loopback with no API keys, unless explicitly allowed."""
        if self.api_keys or self.admin_api_keys or self.allow_unauthenticated or is_loopback_host(host):
            return
        raise InsecureConfiguration(
            f"Refusing to listen on {host!r} without authentication: no API_KEYS are configured, so "
            "anyone who can reach this address could create, stop and delete your GPU instances. "
            "Set API_KEYS=key1,key2 (clients send 'Authorization: Bearer <key>'), listen on 127.0.0.1, "
            "or set ALLOW_UNAUTHENTICATED=true if something in front of this service authenticates."
        )


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
