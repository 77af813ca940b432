"""Python client for a novita-gpu service's HTTP API (not Novita's), blocking and asyncio.

    from novita_gpu_client import Client

    with Client("http://127.0.0.1:3000", api_key="...") as client:
        created = client.create("my-instance", "RTX 4090 24GB", "pytorch-jupyter")
        ready = client.wait_for(created["instanceId"], timeout=900)
        print(ready["connectionDetails"])

Volumes (Novita network storages) have methods of their own: `create_volume` (it waits until the volume
is available), `list_volumes`, `get_volume`, `resize_volume`, `delete_volume`; `create(...,
volumes=["datasets"])` mounts them. Teams: `me` (who this key is: its team and role), `list_teams`,
`get_team` (quotas and their use), `create_team`, `update_team`; the team's keys: `list_keys`, `create_key`
and `rotate_key` (the secret is in their answer, this once), `revoke_key`; the audit trail: `audit` (a
page) and `iter_audit` (every event, page after page). Warm pools: `create_pool`, `list_pools`,
`get_pool`, `update_pool`, `delete_pool`, and `claim` (an instance from a pool: ready at once from a ready
member; `create(..., pool="name")` claims too), given back with `stop(id, return_to_pool=True)`.
`AsyncClient` has the same methods, to be awaited. Answers are the server's JSON objects. Its one
dependency is httpx; the `novita-gpu` command needs the `cli` extra (`novita-gpu-client[cli]`).
"""

from novita_gpu_client.async_client import AsyncClient
from novita_gpu_client.calls import CreateOptions, Json
from novita_gpu_client.client import Client
from novita_gpu_client.config import DEFAULT_URL
from novita_gpu_client.errors import (
    ApiError,
    InstanceFailed,
    InstanceStopped,
    NovitaGpuError,
    ServiceConnectionError,
    VolumeFailed,
    VolumeWaitTimeout,
    WaitTimeout,
)
from novita_gpu_client.events import Event
from novita_gpu_client.mounts import VolumeMount
from novita_gpu_client.retry import RetryPolicy
from novita_gpu_client.signing import verify as verify_webhook
from novita_gpu_client.teams import KEEP, Role
from novita_gpu_client.version import __version__
from novita_gpu_client.vocabulary import Status

__all__ = [
    "DEFAULT_URL",
    "KEEP",
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
    "Role",
    "ServiceConnectionError",
    "Status",
    "VolumeFailed",
    "VolumeMount",
    "VolumeWaitTimeout",
    "WaitTimeout",
    "__version__",
    "verify_webhook",
]
