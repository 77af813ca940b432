"""Port health probes: an instance is ready when every http port's app answers.

tcp ports (SSH, databases) are listed but never block readiness: we cannot tell a real service from
Novita's port forwarder without speaking its protocol.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import httpx

from novita_gpu.instances.lifecycle import is_probe_healthy


@dataclass(frozen=True)
class ProbeResult:
    port: int
    endpoint: str
    healthy: bool
    error: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"port": self.port, "endpoint": self.endpoint, "healthy": self.healthy, "error": self.error}


def probe_url(endpoint: str, path: str | None) -> str:
    url = endpoint if "://" in endpoint else f"http://{endpoint}"
    if path and path != "/":
        url = url.rstrip("/") + path
    return url


async def probe_one(client: httpx.AsyncClient, port: int, endpoint: str, path: str | None) -> ProbeResult:
    url = probe_url(endpoint, path)
    try:
        response = await client.get(url)
    except httpx.TimeoutException:
        return ProbeResult(port, endpoint, False, "timed out")
    except httpx.HTTPError as exc:
        return ProbeResult(port, endpoint, False, f"{type(exc).__name__}")
    if is_probe_healthy(response.status_code):
        return ProbeResult(port, endpoint, True, None)
    return ProbeResult(port, endpoint, False, f"HTTP {response.status_code}")


async def probe_http_ports(
    client: httpx.AsyncClient, ports: list[dict[str, Any]], path: str | None
) -> list[ProbeResult]:
    """Probe every http port mapping that has an endpoint, concurrently."""
    targets = [p for p in ports if p.get("type") == "http" and p.get("endpoint")]
    return list(await asyncio.gather(*(probe_one(client, int(p["port"]), str(p["endpoint"]), path) for p in targets)))


def make_probe_client(timeout: float) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout, connect=min(timeout, 2.0)),
        follow_redirects=False,
        trust_env=False,
        limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
        headers={"User-Agent": "novita-gpu-probe"},
    )
