"""What both clients are built from: where the service is, the API key, timeouts and retries."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from novita_gpu_client.retry import RetryPolicy
from novita_gpu_client.version import __version__

DEFAULT_URL = "http://127.0.0.1:3000"


def _is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def service_url(url: str) -> str:
    """The service's base URL, with `http://` added to a loopback address written without a scheme
    (`localhost:3000`, `127.0.0.1:3000`). Any other URL without one is refused, not guessed: plain http
    would send the API key unencrypted across the network, and https may not be what the server speaks.
    Raises ValueError saying why."""
    text = url.strip()
    if "://" not in text:
        host = urlsplit(f"//{text}").hostname or ""
        if not _is_loopback(host):
            raise ValueError(
                f"the service URL {text!r} has no scheme: write https://{text} (or http://{text}); "
                "only localhost and 127.x addresses get http:// added, so an API key is never sent "
                "in clear text to a host by guess"
            )
        text = f"http://{text}"
    parts = urlsplit(text)
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError(f"the service URL {url!r} must start with http:// or https://")
    if not parts.hostname:
        raise ValueError(f"the service URL {url!r} has no host")
    return text.rstrip("/")


@dataclass(frozen=True, slots=True)
class ClientConfig:
    base_url: str = DEFAULT_URL
    api_key: str | None = field(default=None, repr=False)  # never shown: not in repr, logs or errors
    timeout: float = 30.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    def httpx_options(self) -> dict[str, Any]:
        """Keyword arguments for `httpx.Client` / `httpx.AsyncClient`."""
        headers = {"User-Agent": f"novita-gpu-sdk/{__version__}", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return {"base_url": self.base_url.rstrip("/"), "headers": headers, "timeout": self.timeout}

    def describe(self, kind: str) -> str:
        return f"{kind}(base_url={self.base_url!r}, api_key={'set' if self.api_key else 'not set'})"
