"""Port health probes: an instance is ready when every http port's app answers.

tcp ports (SSH, databases) are listed but never block readiness: we cannot tell a real service from
Novita's port forwarder without speaking its protocol.

A probe only needs the status line of one GET, so it speaks that much HTTP/1.1 itself over an asyncio
stream (TLS for https): several times less CPU than httpx for the same probe, which matters when a few
hundred instances are probed several times a second (docs/performance.md).
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from functools import cache
from typing import Any
from urllib.parse import urlsplit

from novita_gpu.instances.lifecycle import is_probe_healthy


@dataclass(frozen=True)
class ProbeResult:
    port: int
    endpoint: str
    healthy: bool
    error: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"port": self.port, "endpoint": self.endpoint, "healthy": self.healthy, "error": self.error}


class NotHttp(Exception):
    """The endpoint answered something that is not an HTTP status line."""


def probe_url(endpoint: str, path: str | None) -> str:
    url = endpoint if "://" in endpoint else f"http://{endpoint}"
    if path and path != "/":
        url = url.rstrip("/") + path
    return url


@cache
def _tls() -> ssl.SSLContext:
    return ssl.create_default_context()


async def probe_status(url: str, timeout: float) -> int:
    """The status code `url` answers a GET with (redirects are not followed; only the status line is read)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise NotHttp(f"not an http(s) URL: {parts.scheme or '?'}")
    secure = parts.scheme == "https"
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host = parts.netloc.rsplit("@", 1)[-1]
    request = f"GET {target} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: novita-gpu-probe\r\nConnection: close\r\n\r\n"
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(
            parts.hostname, parts.port or (443 if secure else 80), ssl=_tls() if secure else None
        )
        try:
            writer.write(request.encode("latin-1"))
            line = await reader.readline()
        finally:
            writer.close()
    fields = line.split()
    if len(fields) < 2 or not fields[0].startswith(b"HTTP/") or not fields[1].isdigit():
        raise NotHttp("not an HTTP answer")
    return int(fields[1])


async def probe_one(port: int, endpoint: str, path: str | None, timeout: float) -> ProbeResult:
    try:
        status = await probe_status(probe_url(endpoint, path), timeout)
    except TimeoutError:
        return ProbeResult(port, endpoint, False, "timed out")
    except (OSError, NotHttp, ValueError) as exc:
        return ProbeResult(port, endpoint, False, type(exc).__name__)
    if is_probe_healthy(status):
        return ProbeResult(port, endpoint, True, None)
    return ProbeResult(port, endpoint, False, f"HTTP {status}")


async def probe_http_ports(ports: list[dict[str, Any]], path: str | None, timeout: float) -> list[ProbeResult]:
    """Probe every http port mapping that has an endpoint, concurrently."""
    targets = [p for p in ports if p.get("type") == "http" and p.get("endpoint")]
    return list(await asyncio.gather(*(probe_one(int(p["port"]), str(p["endpoint"]), path, timeout) for p in targets)))
