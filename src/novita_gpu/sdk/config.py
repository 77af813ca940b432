"""What both clients are built from: where the service is, the API key, timeouts and retries."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from novita_gpu import __version__
from novita_gpu.sdk.retry import RetryPolicy

DEFAULT_URL = "http://127.0.0.1:3000"


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
