"""Shared steps of the warm pool tests: make a pool over HTTP and let the keeper and reconciler warm it."""

from __future__ import annotations

from typing import Any

from novita_gpu.pools.schemas import PoolAnswer
from tests.harness import Harness

POOL = {"productName": "RTX 4090 24GB", "templateId": "pytorch-jupyter"}


async def make_pool(harness: Harness, name: str = "gpus", **fields: Any) -> dict[str, Any]:
    response = await harness.http.post("/api/pools", json={"name": name, **POOL, **fields})
    assert response.status_code == 201, response.text
    pool: dict[str, Any] = response.json()
    PoolAnswer.model_validate(pool)
    return pool


async def pool_view(harness: Harness, name: str = "gpus") -> dict[str, Any]:
    response = await harness.http.get(f"/api/pools/{name}")
    assert response.status_code == 200, response.text
    view: dict[str, Any] = response.json()
    PoolAnswer.model_validate(view)
    return view


async def until_members(
    harness: Harness, name: str = "gpus", max_seconds: float = 600, **counts: int
) -> dict[str, Any]:
    """Tick until the pool's members are as `counts` says (ready=1, stopped=2, ...)."""

    async def there() -> bool:
        members = (await pool_view(harness, name))["members"]
        return all(members[key] == value for key, value in counts.items())

    await harness.run_until(there, max_seconds=max_seconds)
    return await pool_view(harness, name)


async def claim(harness: Harness, pool: str = "gpus", **body: Any) -> dict[str, Any]:
    response = await harness.http.post(f"/api/pools/{pool}/claim", json={"name": "job", **body})
    assert response.status_code == 201, response.text
    answer: dict[str, Any] = response.json()
    return answer
