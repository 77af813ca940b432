"""Who may read GET /metrics: it shows every key's spend (`cost_month_to_date_usd{api_key}`, ...), which
`/api/costs` shows a key only for itself, so it is an operator's read, not any key's.

Allowed: the METRICS_TOKEN (`Authorization: Bearer <token>`: what Prometheus sends, docs/observability.md),
an owner key (ADMIN_API_KEYS, or a key of role owner kept in the store), or anybody when the service has no keys at all (it then listens on loopback
only, and every caller is already the administrator of the one owner there is). Anything else is refused
in the error envelope: 401 without a credential the service knows, 403 with an API key that is not an
owner's.
"""

from __future__ import annotations

import hashlib
import hmac

from fastapi import Request

from novita_gpu.web.auth import current_principal, presented_key
from novita_gpu.web.errors import ApiError


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def is_metrics_token(request: Request, presented: str | None) -> bool:
    """Whether `presented` is the METRICS_TOKEN (compared in constant time, whatever their lengths)."""
    token = request.app.state.services.settings.metrics_token
    if presented is None or token is None or not token.get_secret_value():
        return False
    return hmac.compare_digest(_digest(presented), _digest(token.get_secret_value()))


async def metrics_reader(request: Request) -> None:
    """The dependency of GET /metrics: returns when the caller may read it, else raises 401 or 403."""
    if is_metrics_token(request, presented_key(request.headers)):
        return
    try:
        caller = await current_principal(request)  # who the key is, as every other route finds out
    except ApiError as exc:
        if exc.status != 401:
            raise
        raise ApiError(
            401,
            "UNAUTHORIZED",
            "/metrics takes the operator's credential: 'Authorization: Bearer <METRICS_TOKEN>' or an admin key "
            "(ADMIN_API_KEYS).",
            headers={"WWW-Authenticate": "Bearer"},
        ) from exc
    if not caller.admin:
        raise ApiError(
            403,
            "FORBIDDEN",
            "/metrics shows every key's spend: only the METRICS_TOKEN or an admin key (ADMIN_API_KEYS) may read it.",
        )
