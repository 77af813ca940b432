"""The emulated account kept in a file: a world loaded from it goes on exactly where the last one was."""

from __future__ import annotations

from pathlib import Path

from novita_gpu.clock import ManualClock
from novita_gpu.emulator import EmulatorConfig
from novita_gpu.emulator import validation as v
from novita_gpu.emulator.state_file import StateFile, default_state_path
from novita_gpu.emulator.world import World
from tests.emulator.conftest import create_body


def world(path: Path, clock: ManualClock) -> World:
    return World(EmulatorConfig(), clock, StateFile(path))


def test_a_world_loaded_from_its_file_goes_on_where_the_last_one_was(tmp_path: Path) -> None:
    clock = ManualClock()
    first = world(tmp_path / "emu.db", clock)
    auths = {a.id for a in first.catalog.registry_auths}
    running = first.create(v.create_request(create_body(name="keeps-running"), auths))
    stopped = first.create(v.create_request(create_body(name="gets-stopped"), auths))
    deleted = first.create(v.create_request(create_body(name="gets-deleted"), auths))
    clock.advance(20)
    first.stop(stopped.id)
    first.delete(deleted.id)
    cluster, product = next(iter(first.catalog.capacity))
    first.set_capacity(cluster, product, 3)
    # no close(): as after kill -9

    clock.advance(10)
    second = world(tmp_path / "emu.db", clock)
    assert second.get(running.id).status_at(second.now()) == "running"
    assert second.get(stopped.id).status_at(second.now()) == "exited"
    gone = second.find(deleted.id)
    assert gone is not None and gone.status_at(second.now()) == "removed"
    assert second.catalog.capacity[(cluster, product)] == 3
    again = second.create(v.create_request(create_body(name="after-restart"), auths))
    assert again.id not in {running.id, stopped.id, deleted.id}


def test_reset_empties_the_file(tmp_path: Path) -> None:
    clock = ManualClock()
    first = world(tmp_path / "emu.db", clock)
    first.create(v.create_request(create_body(), {a.id for a in first.catalog.registry_auths}))
    first.reset()
    first.close()
    assert world(tmp_path / "emu.db", clock).all_instances() == []


def test_the_file_is_readable_by_its_user_only(tmp_path: Path) -> None:
    StateFile(tmp_path / "data" / "emu.db").close()
    assert (tmp_path / "data" / "emu.db").stat().st_mode & 0o077 == 0


def test_the_default_file_sits_next_to_a_sqlite_store() -> None:
    assert default_state_path("sqlite+aiosqlite:///./data/novita-gpu.db") == Path("data/novita-gpu.emulator.db")
    assert default_state_path("sqlite+aiosqlite:////srv/x/store.db?mode=rwc") == Path("/srv/x/store.emulator.db")
    assert default_state_path("postgresql+asyncpg://u@h/db") == Path("data/emulator.db")
