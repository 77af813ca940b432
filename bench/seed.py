"""Fill a store with N steady (stopped) instances, the way the service itself would have left them."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from novita_gpu.kit.db import Database
from novita_gpu.kit.tables import Instance


async def seed_instances(database_url: str, count: int) -> list[str]:
    db = Database(database_url)
    await db.migrate()
    now = datetime.now(UTC)
    ids = []
    async with db.write() as session:
        for i in range(count):
            instance_id = f"inst_{uuid.uuid4().hex[:20]}"
            ids.append(instance_id)
            session.add(
                Instance(
                    id=instance_id,
                    owner="default",
                    name=f"seeded-{i}",
                    upstream_name=f"seeded-{i}-{instance_id[5:13]}",
                    status="stopped",
                    status_reason="USER",
                    product_name="RTX 4090 24GB",
                    product_id="4090.16c62g",
                    template_id="101",
                    image_url="pytorch/pytorch:latest",
                    ports=[{"port": 8888, "type": "http"}, {"port": 22, "type": "tcp"}],
                    envs=[{"key": "TOKEN", "value": "secret"}],
                    gpu_num=1,
                    rootfs_size=60,
                    regions=[],
                    billing_mode="onDemand",
                    auto_stop_minutes=60,
                    labels={"team": "bench"},
                    cluster_id="1",
                    region="US-CA-06",
                    price_per_hour=0.35,
                    connection_details={"ports": [{"port": 8888, "type": "http", "endpoint": "http://x/"}]},
                    desired_state="stopped",
                    action_attempts=0,
                    created_at=now - timedelta(seconds=count - i),
                    updated_at=now,
                    stopped_at=now,
                    version=1,
                )
            )
    await db.dispose()
    return ids


if __name__ == "__main__":  # pragma: no cover
    import sys

    asyncio.run(seed_instances(sys.argv[1], int(sys.argv[2])))
