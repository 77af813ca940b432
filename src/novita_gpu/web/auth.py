"""API keys: `Authorization: Bearer <key>` or `X-API-Key: <key>`.

Each key is its own owner (instances are scoped to the key that created them). With no keys configured
every caller is the single owner "default" — the server then only listens on loopback (see settings).
ADMIN_API_KEYS are keys too (each its own owner) that may also act on other keys' budgets; with no keys
at all the one caller is the administrator of the only owner there is.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from starlette.datastructures import Headers

from novita_gpu.web.errors import ApiError

DEFAULT_OWNER = "default"


def owner_id(key: str) -> str:
    """The owner id of an API key: shown in cost reports and named by an admin, never the key itself."""
    return f"key-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


class ApiKeys:
    def __init__(self, keys: list[str], admin_keys: list[str] | None = None) -> None:
        admins = admin_keys or []
        self._keys = {hashlib.sha256(k.encode()).hexdigest(): owner_id(k) for k in [*keys, *admins]}
        self._admins = {owner_id(k) for k in admins}

    def is_admin(self, owner: str) -> bool:
        return not self._keys or owner in self._admins

    def owner_of(self, presented: str | None) -> str | None:
        if presented is None:
            return None
        digest = hashlib.sha256(presented.encode()).hexdigest()
        for known, owner in self._keys.items():
            if hmac.compare_digest(known, digest):
                return owner
        return None

    def owner_for(self, headers: Headers) -> str | None:
        """The owner a request's headers identify: "default" when no keys are configured, None when the
        key is missing or unknown."""
        if not self._keys:
            return DEFAULT_OWNER
        return self.owner_of(presented_key(headers))


def presented_key(headers: Headers) -> str | None:
    auth = headers.get("authorization")
    if auth:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return headers.get("x-api-key") or None


async def current_owner(request: Request) -> str:
    keys: ApiKeys = request.app.state.api_keys
    owner = keys.owner_for(request.headers)
    if owner is None:
        raise ApiError(
            401,
            "UNAUTHORIZED",
            "A valid API key is required: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return owner


Owner = Annotated[str, Depends(current_owner)]


@dataclass(frozen=True)
class Caller:
    owner: str
    admin: bool


async def current_caller(request: Request) -> Caller:
    """The owner of the request's key, and whether that key is an admin key."""
    owner = await current_owner(request)
    keys: ApiKeys = request.app.state.api_keys
    return Caller(owner, keys.is_admin(owner))


CallerDep = Annotated[Caller, Depends(current_caller)]
