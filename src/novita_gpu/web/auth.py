"""API keys: `Authorization: Bearer <key>` or `X-API-Key: <key>`.

Each key is its own owner (instances are scoped to the key that created them). With no keys configured
every caller is the single owner "default" — the server then only listens on loopback (see settings).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

from fastapi import Depends, Request

from novita_gpu.web.errors import ApiError

DEFAULT_OWNER = "default"


class ApiKeys:
    def __init__(self, keys: list[str]) -> None:
        self._keys = {
            hashlib.sha256(k.encode()).hexdigest(): f"key-{hashlib.sha256(k.encode()).hexdigest()[:12]}" for k in keys
        }

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def owner_of(self, presented: str | None) -> str | None:
        if presented is None:
            return None
        digest = hashlib.sha256(presented.encode()).hexdigest()
        for known, owner in self._keys.items():
            if hmac.compare_digest(known, digest):
                return owner
        return None


def presented_key(request: Request) -> str | None:
    auth = request.headers.get("authorization")
    if auth:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return request.headers.get("x-api-key") or None


async def current_owner(request: Request) -> str:
    keys: ApiKeys = request.app.state.api_keys
    if not keys.enabled:
        return DEFAULT_OWNER
    owner = keys.owner_of(presented_key(request))
    if owner is None:
        raise ApiError(
            401,
            "UNAUTHORIZED",
            "A valid API key is required: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return owner


Owner = Annotated[str, Depends(current_owner)]
