"""DATABASE_URL as people paste it: every PostgreSQL and SQLite spelling becomes our async driver's URL,
and anything else is refused at settings validation with a message that names the variable, not the URL
(which may hold a password)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import text

from novita_gpu.cli.server import describe_validation_error
from novita_gpu.kit.db import Database, describe_store
from novita_gpu.kit.settings import DEFAULT_DATABASE_URL, Settings, normalize_database_url
from tests.fixtures.services import require_postgres


def settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("pasted", "used"),
    [
        ("postgres://app:s3cr%40t@db:5432/novita", "postgresql+asyncpg://app:s3cr%40t@db:5432/novita"),
        ("postgresql://app@db/novita", "postgresql+asyncpg://app@db/novita"),
        ("postgresql+asyncpg://app@db/novita", "postgresql+asyncpg://app@db/novita"),
        ("postgresql+psycopg://app@db/novita", "postgresql+asyncpg://app@db/novita"),
        ("postgresql+psycopg2://app@db/novita", "postgresql+asyncpg://app@db/novita"),
        ("POSTGRES://app@db/novita", "postgresql+asyncpg://app@db/novita"),
        ("  postgres://app@db/novita\n", "postgresql+asyncpg://app@db/novita"),
        # libpq's sslmode (what hosted PostgreSQL hands out) is asyncpg's ssl.
        ("postgres://app@db/novita?sslmode=require", "postgresql+asyncpg://app@db/novita?ssl=require"),
        (
            "postgres://app@db/n?application_name=x&sslmode=verify-full",
            "postgresql+asyncpg://app@db/n?application_name=x&ssl=verify-full",
        ),
        ("sqlite:///./data/novita-gpu.db", "sqlite+aiosqlite:///./data/novita-gpu.db"),
        ("sqlite:////var/lib/novita-gpu/store.db", "sqlite+aiosqlite:////var/lib/novita-gpu/store.db"),
        ("sqlite+aiosqlite:///./data/novita-gpu.db", "sqlite+aiosqlite:///./data/novita-gpu.db"),
        ("sqlite+pysqlite:///store.db", "sqlite+aiosqlite:///store.db"),
    ],
)
def test_every_spelling_becomes_the_async_driver_url(pasted: str, used: str) -> None:
    assert normalize_database_url(pasted) == used
    assert settings(database_url=pasted).database_url == used


def test_the_default_is_already_normal() -> None:
    assert normalize_database_url(DEFAULT_DATABASE_URL) == DEFAULT_DATABASE_URL
    assert settings().database_url == DEFAULT_DATABASE_URL


@pytest.mark.parametrize(
    ("pasted", "reason"),
    [
        ("mysql://app:hunter22@db/novita", "unsupported database 'mysql'"),
        ("data/novita-gpu.db", "not a database URL"),
        ("sqlite://", "a SQLite store must be a file"),
        ("sqlite:///:memory:", "a SQLite store must be a file"),
        ("sqlite://./data/novita-gpu.db", "a SQLite store must be a file: three slashes"),
    ],
)
def test_other_urls_are_refused_naming_the_variable_without_echoing_it(pasted: str, reason: str) -> None:
    with pytest.raises(ValidationError) as refused:
        settings(database_url=pasted)
    message = describe_validation_error(refused.value)
    assert message.startswith(f"DATABASE_URL: {reason}"), message
    assert "hunter22" not in message and "(got" not in message


def test_bad_values_name_their_variable_and_what_was_given() -> None:
    with pytest.raises(ValidationError) as refused:
        settings(port="abc", log_level="verbose", novita_api_key=["not", "a", "string"])
    assert describe_validation_error(refused.value) == (
        "PORT: Input should be a valid integer (got 'abc'); "
        "NOVITA_API_KEY: Input should be a valid string; "
        "LOG_LEVEL: use DEBUG, INFO, WARNING, ERROR or CRITICAL (got 'verbose')"
    )


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("sqlite+aiosqlite:///./data/novita-gpu.db", "sqlite:./data/novita-gpu.db"),
        ("sqlite+aiosqlite:////var/lib/store.db?timeout=5", "sqlite:/var/lib/store.db"),
        ("postgresql+asyncpg://app:hunter22@db:5433/novita?ssl=require", "postgresql://app@db:5433/novita"),
    ],
)
def test_the_store_is_described_without_secrets(url: str, shown: str) -> None:
    assert describe_store(url) == shown


async def test_a_pasted_postgres_url_reaches_the_database() -> None:
    """The spelling that used to end in "Can't load plugin: sqlalchemy.dialects:postgres"."""
    pasted = require_postgres().replace("postgresql+asyncpg://", "postgres://") + "?sslmode=disable"
    db = Database(settings(database_url=pasted).database_url)
    try:
        assert (await db.fetch(text("SELECT 1")))[0][0] == 1
    finally:
        await db.dispose()


async def test_a_pasted_sqlite_url_opens_the_file(tmp_path: Path) -> None:
    db = Database(settings(database_url=f"sqlite:///{tmp_path / 'store.db'}").database_url)
    try:
        assert (await db.fetch(text("SELECT 1")))[0][0] == 1
    finally:
        await db.dispose()
    assert (tmp_path / "store.db").exists()


@pytest.mark.parametrize(
    "pasted", ["api.novita.ai", "api.novita.ai/gpu-instance/openapi", "ftp://api.novita.ai", "https://"]
)
def test_a_novita_base_url_without_scheme_or_host_is_refused_at_start_up(pasted: str) -> None:
    with pytest.raises(ValidationError) as caught:
        settings(novita_api_base_url=pasted)
    described = describe_validation_error(caught.value)
    assert described.startswith("NOVITA_API_BASE_URL: must start with https://"), described


def test_a_novita_base_url_is_kept_without_its_trailing_slash() -> None:
    assert settings(novita_api_base_url=" https://api.novita.ai/gpu-instance/openapi/ ").novita_api_base_url == (
        "https://api.novita.ai/gpu-instance/openapi"
    )
