"""The one small interface every cache store implements, plus helpers the stores share.

Stores hold opaque bytes under string keys. They know nothing about cache names: a `NamedCache`
namespaces its keys as `<name>:<key>` and a remote store adds its own prefix in front of that, so a
store only ever reads, counts or deletes keys inside its own namespace.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

DEFAULT_PREFIX = "novita-gpu:"

_GLOB_SPECIAL = frozenset("*?[]\\")


class CacheBackend(Protocol):
    @property
    def name(self) -> str:
        """ "memory", "redis" or "upstash"."""
        ...

    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        """Store `value` for `ttl` seconds."""
        ...

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every key starting with the literal `prefix`; returns how many were deleted."""
        ...

    async def count_prefix(self, prefix: str) -> int:
        """How many live keys start with the literal `prefix`."""
        ...

    async def ping(self) -> None:
        """Return when the store answers; raise when it does not."""
        ...

    async def aclose(self) -> None: ...


class CacheUnavailable(Exception):
    """A remote store failed (refused, timed out, rejected the command). The message holds no secrets."""


def glob_escape(literal: str) -> str:
    """Escape Redis glob characters so a MATCH pattern matches `literal` exactly."""
    return "".join("\\" + char if char in _GLOB_SPECIAL else char for char in literal)


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every non-empty secret in `text` with `***`."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def checked_prefix(prefix: str) -> str:
    """A remote store refuses to work without a prefix: un-prefixed keys could belong to anyone."""
    if not prefix:
        raise ValueError("a remote cache needs a non-empty key prefix")
    return prefix
