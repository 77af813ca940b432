"""The SQLite store holds instance env values (secrets): it is created readable by its user only."""

from __future__ import annotations

import stat
from pathlib import Path

from structlog.testing import capture_logs

from novita_gpu.kit.db import Database
from tests.harness import Harness


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_a_new_store_and_its_wal_are_private_to_the_user(tmp_path: Path) -> None:
    store = tmp_path / "data" / "novita-gpu.db"
    harness = await Harness(tmp_path, database_url=f"sqlite+aiosqlite:///{store}").start()
    try:
        await harness.create(envs=[{"key": "HF_TOKEN", "value": "hf_secret_value_123"}])
        assert mode(store.parent) == 0o700
        assert mode(store) == 0o600
        wal = store.with_name(store.name + "-wal")
        assert wal.exists() and mode(wal) == 0o600
    finally:
        await harness.stop()


async def test_an_existing_store_others_can_read_is_left_alone_with_a_warning(tmp_path: Path) -> None:
    store = tmp_path / "shared.db"
    store.touch(mode=0o644)
    store.chmod(0o644)
    with capture_logs() as logs:
        db = Database(f"sqlite+aiosqlite:///{store}")
    await db.dispose()
    assert mode(store) == 0o644
    [warning] = [entry for entry in logs if entry["event"] == "database_file_readable_by_others"]
    assert warning["log_level"] == "warning" and warning["hint"] == f"chmod 600 {store}"
