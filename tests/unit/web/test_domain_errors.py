"""Domain errors (novita_gpu/kit/errors.py) and the one table in web/errors.py that gives each its status:
every class has one, and each renders the API's error envelope with its code, message, details and
Retry-After as the API has always sent them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from novita_gpu.kit.errors import (
    BudgetExceeded,
    BudgetLocked,
    DomainError,
    Forbidden,
    IdempotencyConflict,
    InstanceNotFound,
    InvalidInput,
    InvalidTransition,
    KeyNotFound,
    NameTaken,
    PoolExhausted,
    PoolNameTaken,
    PoolNotFound,
    PoolSpecConflict,
    ShuttingDown,
    TeamNotFound,
    TooManyStreams,
    UpstreamUnavailable,
    VolumeInUse,
    VolumeNameTaken,
    VolumeNotFound,
)
from novita_gpu.teams.quotas import QuotaExceeded
from novita_gpu.teams.service import TeamNameTaken
from novita_gpu.web.errors import domain_status, install_error_handlers

# One of each class, and the status, code, message, details and Retry-After the API answers with.
EXAMPLES: list[tuple[DomainError, int, str, str, list[dict[str, str]] | None, str | None]] = [
    (
        InvalidInput("INVALID_WEBHOOK_URL", "not https", field="webhookUrl"),
        400,
        "INVALID_WEBHOOK_URL",
        "not https",
        [{"field": "webhookUrl", "message": "not https"}],
        None,
    ),
    (InstanceNotFound("inst_1"), 404, "INSTANCE_NOT_FOUND", "No instance 'inst_1'.", None, None),
    (Forbidden("Only an admin key may."), 403, "FORBIDDEN", "Only an admin key may.", None, None),
    (
        BudgetLocked(),
        403,
        "FORBIDDEN",
        "An administrator set this budget; only an admin key may change or remove it.",
        None,
        None,
    ),
    (BudgetExceeded("Spent."), 403, "BUDGET_EXCEEDED", "Spent.", None, None),
    (
        NameTaken("web", "inst_1"),
        409,
        "NAME_TAKEN",
        "An instance named 'web' already exists (inst_1); names are unique.",
        None,
        None,
    ),
    (VolumeNotFound("data"), 404, "VOLUME_NOT_FOUND", "No volume 'data'.", None, None),
    (
        VolumeNameTaken("data"),
        409,
        "NAME_TAKEN",
        "A volume named 'data' already exists; names are unique among your volumes.",
        None,
        None,
    ),
    (
        VolumeInUse("data", [("inst_1", "trainer")]),
        409,
        "VOLUME_IN_USE",
        "Volume 'data' is mounted by trainer (inst_1); delete (terminate) those instances first.",
        [{"field": "instanceId", "message": "inst_1"}],
        None,
    ),
    (InvalidTransition("Instance is terminated."), 409, "INVALID_STATE", "Instance is terminated.", None, None),
    (
        IdempotencyConflict(),
        409,
        "IDEMPOTENCY_CONFLICT",
        "This Idempotency-Key was already used with a different request body.",
        None,
        None,
    ),
    (TooManyStreams("Close one."), 429, "TOO_MANY_STREAMS", "Close one.", None, "5"),
    (UpstreamUnavailable("Try again.", retry_after=2.6), 503, "UPSTREAM_UNAVAILABLE", "Try again.", None, "3"),
    (ShuttingDown(), 503, "SHUTTING_DOWN", "The server is shutting down; reconnect.", None, "1"),
    (TeamNotFound("ml"), 404, "TEAM_NOT_FOUND", "No team 'ml'.", None, None),
    (KeyNotFound("ak_1"), 404, "KEY_NOT_FOUND", "No API key 'ak_1'.", None, None),
    (PoolNotFound("gpus"), 404, "POOL_NOT_FOUND", "No pool 'gpus'.", None, None),
    (
        PoolNameTaken("gpus"),
        409,
        "NAME_TAKEN",
        "A pool named 'gpus' already exists; names are unique among your pools.",
        None,
        None,
    ),
    (PoolExhausted("Pool 'gpus' is full."), 409, "POOL_EXHAUSTED", "Pool 'gpus' is full.", None, None),
    (
        PoolSpecConflict("POOL_SPEC_FIELD", "region is the pool's to set.", field="region"),
        409,
        "POOL_SPEC_FIELD",
        "region is the pool's to set.",
        [{"field": "region", "message": "region is the pool's to set."}],
        None,
    ),
    (TeamNameTaken("ml"), 409, "NAME_TAKEN", "A team named 'ml' already exists; team names are unique.", None, None),
    (
        QuotaExceeded("maxGpus", 4, 4, 1),
        403,
        "QUOTA_EXCEEDED",
        "The team's quota maxGpus is 4: it holds 4 and this asks for 1 more.",
        [{"field": "maxGpus", "message": "limit 4, in use 4, requested 1"}],
        None,
    ),
]


def every_subclass(cls: type[DomainError]) -> set[type[DomainError]]:
    """The package's subclasses of `cls`, at any depth (not this module's `Unlisted`)."""
    found = {sub for sub in cls.__subclasses__() if sub.__module__.startswith("novita_gpu.")}
    for sub in list(found):
        found |= every_subclass(sub)
    return found


def test_every_domain_error_has_a_status() -> None:
    missing = sorted(cls.__name__ for cls in every_subclass(DomainError) if domain_status(cls) is None)
    assert missing == []
    assert domain_status(DomainError) is None  # the base itself is not raised


def test_the_examples_cover_every_class() -> None:
    assert {type(error) for error, *_ in EXAMPLES} == every_subclass(DomainError)


def test_retry_after_is_whole_seconds_and_at_least_one() -> None:
    assert UpstreamUnavailable("x", retry_after=0.2).retry_after == 1
    assert UpstreamUnavailable("x", retry_after=7.4).retry_after == 7


class Unlisted(DomainError):
    """A class missing from the table: a bug, answered like any unexpected error."""


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    install_error_handlers(app)
    raised: dict[str, DomainError] = {type(error).__name__: error for error, *_ in EXAMPLES}
    raised["Unlisted"] = Unlisted("oops")

    @app.get("/raise/{name}")
    async def raise_it(name: str) -> None:
        raise raised[name]

    transport = httpx.ASGITransport(app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


@pytest.mark.parametrize(("error", "status", "code", "message", "details", "retry_after"), EXAMPLES)
async def test_each_error_renders_the_envelope(
    client: httpx.AsyncClient,
    error: DomainError,
    status: int,
    code: str,
    message: str,
    details: list[dict[str, str]] | None,
    retry_after: str | None,
) -> None:
    response = await client.get(f"/raise/{type(error).__name__}", headers={"X-Request-ID": "req-1"})
    assert response.status_code == status
    body: dict[str, Any] = {"code": code, "message": message, "requestId": "req-1"}
    if details is not None:
        body["details"] = details
    assert response.json() == {"error": body}
    assert response.headers.get("retry-after") == retry_after


async def test_a_class_missing_from_the_table_is_a_500_without_internals(client: httpx.AsyncClient) -> None:
    response = await client.get("/raise/Unlisted")
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "INTERNAL_ERROR"
    assert "oops" not in response.text
