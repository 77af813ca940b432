"""The emulated account kept in a file: a world loaded from it goes on exactly where the last one was."""

from __future__ import annotations

from pathlib import Path

import pytest

from novita_gpu.emulator import EmulatorConfig
from novita_gpu.emulator import account_validation as av
from novita_gpu.emulator import validation as v
from novita_gpu.emulator.account import PrewarmQuery, PrewarmRequest, StorageQuery
from novita_gpu.emulator.errors import EmulatedError
from novita_gpu.emulator.state_file import StateFile, default_state_path
from novita_gpu.emulator.world import World
from novita_gpu.kit.clock import ManualClock
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


def test_account_objects_are_kept_in_the_file_too(tmp_path: Path) -> None:
    """Private templates, registry auths, network storages and prewarm tasks, created or deleted, are all
    where they were after a restart (seeded ones included: a deleted seeded auth stays deleted)."""
    clock = ManualClock()
    first = world(tmp_path / "emu.db", clock)
    account = first.account
    [seeded_auth, kept_auth] = account.registry_auths()
    account.delete_registry_auth(seeded_auth.id)
    new_auth = account.save_registry_auth("hub", "me", "pw")
    seeded_template = next(t for t in first.catalog.templates if t.mine)
    account.delete_template(seeded_template.id)
    fields = av.template_fields(
        {"name": "mine", "type": "instance", "channel": "private", "image": "app:1", "rootfsSize": 10}, set()
    )
    template = account.create_template(fields)
    storage = account.create_storage("5", "data", 50)
    account.update_storage(storage.id, "data", 80)
    dropped = account.create_storage("5", "scratch", 10)
    account.delete_storage(dropped.id)
    task = account.create_prewarm(PrewarmRequest("ghcr.io/a/b:1", "", "1", ["4090.16c62g"], "note"))
    mounted = first.create(
        v.create_request(
            create_body(productId="4090.16c62g.eu", networkStorages=[{"Id": storage.id, "mountPoint": "/d"}]),
            account.registry_auth_ids(),
        )
    )
    # no close(): as after kill -9

    clock.advance(60)
    second = world(tmp_path / "emu.db", clock).account
    assert [a.id for a in second.registry_auths()] == [kept_auth.id, new_auth.id]
    assert [t.id for t in second.templates(None, True, "", "")] == [template.id]
    assert second.template(template.id) == template
    assert [(s.id, s.size) for s in second.storages(StorageQuery(10, 1))[0]] == [(storage.id, 80)]
    [loaded] = second.prewarm_tasks(PrewarmQuery(10, 1))[0]
    assert loaded == task and loaded.state_at(clock.now().timestamp()) == "Succeeded"
    assert second.create_template(fields).id == str(int(template.id) + 1)
    with pytest.raises(EmulatedError) as in_use:  # the reloaded instance still mounts it
        second.delete_storage(storage.id)
    assert in_use.value.reason == "NETWORK_STORAGE_IN_USE"
    assert mounted.id


def test_reset_brings_back_the_seeded_account(tmp_path: Path) -> None:
    clock = ManualClock()
    first = world(tmp_path / "emu.db", clock)
    seeded = [a.id for a in first.account.registry_auths()]
    first.account.delete_registry_auth(seeded[0])
    first.account.create_storage("5", "data", 50)
    first.reset()
    first.close()
    again = world(tmp_path / "emu.db", clock).account
    assert [a.id for a in again.registry_auths()] == seeded
    assert again.storages(StorageQuery(10, 1)) == ([], 0)


def test_storage_capacity_set_is_kept_in_the_file(tmp_path: Path) -> None:
    clock = ManualClock()
    first = world(tmp_path / "emu.db", clock)
    first.account.set_storage_capacity("5", 120)
    first.account.create_storage("5", "data", 100)
    # no close(): as after kill -9

    second = world(tmp_path / "emu.db", clock).account
    capacity = {c["clusterId"]: c for c in second.storage_capacity()}
    assert (capacity["5"]["gb"], capacity["5"]["free"]) == (120, 20)
    assert capacity["4"]["gb"] == 5120  # the others keep their seeded capacity
    with pytest.raises(EmulatedError) as too_large:
        second.create_storage("5", "more", 30)
    assert too_large.value.reason == "NETWORK_STORAGE_TOO_LARGE"


def test_data_markers_are_kept_in_the_file(tmp_path: Path) -> None:
    """A storage's marker and an instance's local disk marker are where they were after a restart, and
    the disk marker still goes when the reloaded instance stops."""
    clock = ManualClock()
    first = world(tmp_path / "emu.db", clock)
    storage = first.account.create_storage("5", "data", 50)
    first.account.write_storage_data(storage.id, "weights-v1")
    mounts = [{"Id": storage.id, "mountPoint": "/data"}]
    body = create_body(productId="4090.16c62g.eu", networkStorages=mounts)
    instance = first.create(v.create_request(body, first.account.registry_auth_ids()))
    clock.advance(20)
    first.write_disk(instance.id, "pip cache")
    # no close(): as after kill -9

    clock.advance(5)
    second = world(tmp_path / "emu.db", clock)
    assert second.account.storage_data(storage.id) == "weights-v1"
    assert second.disk(instance.id) == "pip cache"
    assert second.volumes(instance.id) == [{"storageId": storage.id, "mountPoint": "/data", "bytes": "weights-v1"}]
    second.stop(instance.id)
    clock.advance(5)
    assert second.disk(instance.id) == ""
    second.close()

    third = world(tmp_path / "emu.db", clock)
    assert third.disk(instance.id) == "" and third.account.storage_data(storage.id) == "weights-v1"
