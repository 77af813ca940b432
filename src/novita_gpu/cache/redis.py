"""Shared stores: Redis over its own protocol (redis.asyncio) and Upstash over its REST protocol.

Both keep every key under `prefix` and find keys with SCAN + MATCH on the escaped literal namespace;
nothing here ever flushes a database or passes a caller's pattern through. Timeouts are short on
purpose: a slow cache is a down cache, and `FallbackBackend` then serves from memory.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import httpx
import redis.asyncio as aioredis
from pydantic import SecretStr
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from novita_gpu.cache.base import DEFAULT_PREFIX, CacheUnavailable, checked_prefix, glob_escape, redact

T = TypeVar("T")

SCAN_COUNT = 500
REDIS_TIMEOUT = 0.5
# Upstash is reached over TLS across the internet: one handshake alone can take a few hundred ms.
UPSTASH_TIMEOUT = 1.0


def _ttl_ms(ttl: float) -> int:
    return max(1, round(ttl * 1000))


def _url_secrets(url: str) -> list[str]:
    try:
        password = urlsplit(url).password
    except ValueError:
        return []
    return [password, unquote(password)] if password else []


class RedisBackend:
    """Redis via redis.asyncio; one retry without backoff covers a connection dropped by a restart."""

    name = "redis"

    def __init__(self, url: str, prefix: str = DEFAULT_PREFIX, *, timeout: float = REDIS_TIMEOUT) -> None:
        self.prefix = checked_prefix(prefix)
        self._secrets = _url_secrets(url)
        self._client: aioredis.Redis = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 1),
        )

    def __repr__(self) -> str:
        return f"RedisBackend(prefix={self.prefix!r})"

    async def get(self, key: str) -> bytes | None:
        value: bytes | None = await self._run("GET", self._client.get(self.prefix + key))
        return value

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        await self._run("SET", self._client.set(self.prefix + key, value, px=_ttl_ms(ttl)))

    async def delete_prefix(self, prefix: str) -> int:
        pattern = glob_escape(self.prefix + prefix) + "*"
        deleted = 0
        cursor = 0
        while True:
            cursor, keys = await self._run("SCAN", self._client.scan(cursor, match=pattern, count=SCAN_COUNT))
            if keys:
                deleted += int(await self._run("DEL", self._client.delete(*keys)))
            if cursor == 0:
                return deleted

    async def count_prefix(self, prefix: str) -> int:
        pattern = glob_escape(self.prefix + prefix) + "*"
        seen: set[bytes] = set()
        cursor = 0
        while True:
            cursor, keys = await self._run("SCAN", self._client.scan(cursor, match=pattern, count=SCAN_COUNT))
            seen.update(keys)
            if cursor == 0:
                return len(seen)

    async def ping(self) -> None:
        await self._run("PING", self._client.ping())

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _run(self, command: str, call: Awaitable[T]) -> T:
        try:
            return await call
        except (RedisError, OSError) as exc:  # TimeoutError is an OSError
            message = f"redis {command} failed: {type(exc).__name__}: {exc}"
            raise CacheUnavailable(redact(message, self._secrets)) from None


def _decode_base64(value: Any) -> Any:
    """Undo `Upstash-Encoding: base64`: every string is base64 except the status "OK" (as Upstash's
    own SDKs decode it); numbers and nulls stay as they are."""
    if value == "OK":
        return b"OK"
    if isinstance(value, str):
        return base64.b64decode(value, validate=True)
    if isinstance(value, list):
        return [_decode_base64(item) for item in value]
    return value


class UpstashBackend:
    """Upstash Redis over REST: each command is a JSON array POSTed to the base URL.

    Answers are `{"result": ...}` or `{"error": ...}`; we ask for base64 answers so values come back
    byte for byte. Commands travel as JSON strings, so values must be UTF-8 (JSON is).
    """

    name = "upstash"

    def __init__(
        self,
        rest_url: str,
        token: SecretStr,
        prefix: str = DEFAULT_PREFIX,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        timeout: float = UPSTASH_TIMEOUT,
    ) -> None:
        self.prefix = checked_prefix(prefix)
        self._token = token
        self._http = httpx.AsyncClient(
            base_url=rest_url.rstrip("/"),
            headers={"Authorization": f"Bearer {token.get_secret_value()}", "Upstash-Encoding": "base64"},
            timeout=timeout,
            transport=transport,
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"UpstashBackend(url={str(self._http.base_url)!r}, prefix={self.prefix!r})"

    async def get(self, key: str) -> bytes | None:
        value: bytes | None = await self._command("GET", self.prefix + key)
        return value

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("Upstash stores text: cache values must be UTF-8 (for example JSON)") from None
        await self._command("SET", self.prefix + key, text, "PX", str(_ttl_ms(ttl)))

    async def delete_prefix(self, prefix: str) -> int:
        deleted = 0
        async for keys in self._scan(prefix):
            deleted += int(await self._command("DEL", *keys))
        return deleted

    async def count_prefix(self, prefix: str) -> int:
        seen: set[str] = set()
        async for keys in self._scan(prefix):
            seen.update(keys)
        return len(seen)

    async def ping(self) -> None:
        await self._command("PING")

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _scan(self, prefix: str) -> AsyncIterator[list[str]]:
        pattern = glob_escape(self.prefix + prefix) + "*"
        cursor = "0"
        while True:
            scan = ("SCAN", cursor, "MATCH", pattern, "COUNT", str(SCAN_COUNT))
            raw_cursor, raw_keys = await self._command(*scan)
            cursor = raw_cursor.decode()
            if raw_keys:
                yield [key.decode("utf-8") for key in raw_keys]
            if cursor == "0":
                return

    async def _command(self, *args: str) -> Any:
        command = args[0]
        try:
            response = await self._http.post("", json=list(args))
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise self._failure(command, f"{type(exc).__name__}: {exc}") from None
        if not isinstance(body, dict):
            raise self._failure(command, f"HTTP {response.status_code}: unexpected answer")
        if "error" in body or response.status_code != 200:
            raise self._failure(command, f"HTTP {response.status_code}: {body.get('error', 'no result')}")
        try:
            return _decode_base64(body.get("result"))
        except ValueError:
            raise self._failure(command, "answer is not base64 as requested") from None

    def _failure(self, command: str, detail: str) -> CacheUnavailable:
        message = f"upstash {command} failed: {detail}"
        return CacheUnavailable(redact(message, [self._token.get_secret_value()]))
