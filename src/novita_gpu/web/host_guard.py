"""Refuse requests addressed to a host name this service does not answer for (DNS rebinding).

With no API keys the service listens on loopback only, and that alone does not keep web pages out: a
page on an attacker's domain can point that domain's DNS at 127.0.0.1 and then call this service as its
own origin, reading the answers and creating, stopping or deleting GPU instances. The browser still
sends the attacker's name in the Host header, so answering only for loopback names (and the names in
ALLOWED_HOSTS) closes that door. With API keys a page cannot present a key it does not know, so every
host name is answered unless ALLOWED_HOSTS lists them.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from novita_gpu.kit.settings import Settings, is_loopback_host
from novita_gpu.web.responses import JSONResponse


def answered_hosts(settings: Settings) -> frozenset[str] | None:
    """The host names answered besides loopback ones; None when every name is answered."""
    if settings.allowed_hosts:
        return frozenset(_normalised(host) for host in settings.allowed_hosts)
    if settings.api_keys or settings.allow_unauthenticated:
        return None
    return frozenset()


def host_name(host_header: str) -> str:
    """The name in a Host header, without port, brackets, trailing dot or case ("[::1]:3000" -> "::1")."""
    host = host_header.strip()
    if host.startswith("["):
        host = host[1:].partition("]")[0]
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    return _normalised(host)


def _normalised(host: str) -> str:
    return host.strip().rstrip(".").lower()


class HostGuard:
    _MAX_VERDICTS = 256

    def __init__(self, app: ASGIApp, answered: frozenset[str] | None) -> None:
        self.app = app
        self.answered = answered
        # Host header value -> answered? Clients send a handful of values, and judging one (an IP
        # address parse included) on every request was a measurable part of a cached GET.
        self._verdicts: dict[bytes, bool] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.answered is None or scope["type"] != "http" or self._answers(scope):
            await self.app(scope, receive, send)
            return
        message = (
            "This service answers only for localhost here, since it has no API keys (a web page could "
            "otherwise reach it through DNS rebinding). Call it as http://127.0.0.1, or list the name in "
            "ALLOWED_HOSTS, or set API_KEYS."
        )
        request_id = str(scope.get("state", {}).get("request_id", ""))
        error = {"code": "HOST_NOT_ALLOWED", "message": message, "requestId": request_id}
        await JSONResponse({"error": error}, status_code=400)(scope, receive, send)

    def _answers(self, scope: Scope) -> bool:
        for name, value in scope["headers"]:
            if name == b"host":
                verdict = self._verdicts.get(value)
                if verdict is None:
                    if len(self._verdicts) >= self._MAX_VERDICTS:
                        self._verdicts.clear()
                    verdict = self._verdicts[value] = self._judge(value)
                return verdict
        return True  # no Host header (HTTP/1.0): not a browser, so not a rebinding attack

    def _judge(self, host_header: bytes) -> bool:
        host = host_name(host_header.decode("latin-1"))
        return not host or is_loopback_host(host) or host in (self.answered or ())
