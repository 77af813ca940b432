"""Python client for the control plane's HTTP API (not Novita's), blocking and asyncio.

    from novita_gpu.sdk import Client

    with Client("http://127.0.0.1:3000", api_key="...") as client:
        created = client.create("my-instance", "RTX 4090 24GB", "pytorch-jupyter")
        ready = client.wait_for(created["instanceId"], timeout=900)
        print(ready["connectionDetails"])

`AsyncClient` has the same methods, to be awaited. Answers are the server's JSON objects.
"""

from novita_gpu.sdk.async_client import AsyncClient
from novita_gpu.sdk.calls import CreateOptions, Json
from novita_gpu.sdk.client import Client
from novita_gpu.sdk.config import DEFAULT_URL
from novita_gpu.sdk.errors import (
    ApiError,
    InstanceFailed,
    InstanceStopped,
    NovitaGpuError,
    ServiceConnectionError,
    WaitTimeout,
)
from novita_gpu.sdk.events import Event
from novita_gpu.sdk.retry import RetryPolicy
from novita_gpu.sdk.webhooks import verify as verify_webhook

__all__ = [
    "DEFAULT_URL",
    "ApiError",
    "AsyncClient",
    "Client",
    "CreateOptions",
    "Event",
    "InstanceFailed",
    "InstanceStopped",
    "Json",
    "NovitaGpuError",
    "RetryPolicy",
    "ServiceConnectionError",
    "WaitTimeout",
    "verify_webhook",
]
