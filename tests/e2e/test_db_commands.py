"""`novita-gpu db upgrade / current / backup` run as an operator runs them: subprocesses on real stores,
and a backup taken while a service writes, restored and served by a new `novita-gpu serve`."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory

from novita_gpu.kit.migrations import alembic_config
from novita_gpu.sdk import Client
from tests.e2e.conftest import Processes
from tests.e2e.processes import NOVITA_GPU, ServiceProcess, clean_environment, wait_for
from tests.e2e.test_crash_safety import create
from tests.fixtures.databases import set_revision

pytestmark = pytest.mark.e2e

TIMEOUT = 60.0
HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()
NEWER = "9999_from_a_newer_version"


def db(command: str, *args: str, url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_db(command, *args, env={"DATABASE_URL": url}, cwd=cwd)


def run_db(command: str, *args: str, env: Mapping[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(NOVITA_GPU), "db", command, *args],
        env={**clean_environment(), **env},
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=cwd,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0 and result.stderr == "", (result.returncode, result.stdout, result.stderr)
    return result.stdout.strip()


def error_line(result: subprocess.CompletedProcess[str], code: int) -> str:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    [line] = result.stderr.splitlines()
    assert line.startswith("error: ") and result.stdout == "", (result.stdout, result.stderr)
    return line


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A new, empty store: its URL as pasted, and how the commands name it."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'data' / 'novita-gpu.db'}", f"sqlite:{tmp_path / 'data' / 'novita-gpu.db'}"
        return
    url = request.getfixturevalue("postgres_url")
    yield url.replace("postgresql+asyncpg://", "postgres://"), url.replace("postgresql+asyncpg://", "postgresql://")


def test_upgrade_then_current_says_up_to_date(store: tuple[str, str], tmp_path: Path) -> None:
    url, shown = store
    assert ok(db("upgrade", url=url, cwd=tmp_path)) == f"store {shown} upgraded from none (empty) to revision {HEAD}"
    assert ok(db("current", url=url, cwd=tmp_path)) == f"store {shown} at revision {HEAD}: up to date"
    assert ok(db("upgrade", url=url, cwd=tmp_path)) == f"store {shown} at revision {HEAD}: already up to date"


def _set_revision(url: str, revision: str) -> None:
    asyncio.run(set_revision(url, revision))


def test_current_says_what_to_do_with_an_older_or_a_newer_store(tmp_path: Path) -> None:
    path = tmp_path / "novita-gpu.db"
    url = f"sqlite+aiosqlite:///{path}"
    ok(db("upgrade", url=url, cwd=tmp_path))
    _set_revision(url, "0001")
    assert ok(db("current", url=url, cwd=tmp_path)) == (
        f"store sqlite:{path} at revision 0001: behind {HEAD}: run `novita-gpu db upgrade` "
        "(or start the service, which upgrades)"
    )
    _set_revision(url, NEWER)
    assert ok(db("current", url=url, cwd=tmp_path)) == (
        f"store sqlite:{path} at revision {NEWER}: migrated by a newer novita-gpu "
        f"(this one knows up to {HEAD}): upgrade novita-gpu"
    )
    assert error_line(db("upgrade", url=url, cwd=tmp_path), 2) == (
        f"error: the store at {url} was migrated by a newer novita-gpu (revision {NEWER}); upgrade this one"
    )


def test_current_on_a_missing_sqlite_store_does_not_create_it(tmp_path: Path) -> None:
    result = run_db("current", env={}, cwd=tmp_path)  # the default store, ./data/novita-gpu.db
    assert error_line(result, 1) == (
        "error: no SQLite store at data/novita-gpu.db (`novita-gpu db upgrade` or `novita-gpu serve` creates it)"
    )
    assert not (tmp_path / "data").exists()


def test_upgrades_run_together_on_a_new_postgres_store_all_succeed(postgres_url: str, tmp_path: Path) -> None:
    """Several replicas (or a deploy job and replicas) upgrading at once: one migrates, the others wait
    for its advisory lock and find the schema at head."""
    procs = [
        subprocess.Popen(
            [str(NOVITA_GPU), "db", "upgrade"],
            env={**clean_environment(), "DATABASE_URL": postgres_url},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
        )
        for _ in range(4)
    ]
    results = [(proc.wait(timeout=TIMEOUT), *proc.communicate()) for proc in procs]
    assert [code for code, _, _ in results] == [0] * 4, results
    assert sum("upgraded from none (empty)" in out for _, out, _ in results) == 1, results
    assert ok(db("current", url=postgres_url, cwd=tmp_path)).endswith(f"at revision {HEAD}: up to date")


def test_backup_of_postgres_points_to_pg_dump(postgres_url: str, tmp_path: Path) -> None:
    url = postgres_url.replace("postgres@", "postgres:hunter22@", 1)
    line = error_line(db("backup", str(tmp_path / "backup.db"), url=url, cwd=tmp_path), 2)
    assert line.startswith("error: db backup copies SQLite stores only; back up postgresql://postgres@"), line
    assert "pg_dump --format=custom" in line and "pg_restore" in line and "hunter22" not in line
    assert not (tmp_path / "backup.db").exists()


class Writer(threading.Thread):
    """Creates instances one after another through the service's API until stopped, noting when each
    create was answered (committed)."""

    def __init__(self, service: ServiceProcess) -> None:
        super().__init__(daemon=True)
        self.service = service
        self.created: list[tuple[float, str]] = []
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stop.is_set() and len(self.created) < 500:
                instance = create(self.service, f"backup-{len(self.created):03d}")
                self.created.append((time.monotonic(), instance["instanceId"]))
        except BaseException as exc:
            self.error = exc


def test_a_backup_taken_while_the_service_writes_is_restored_and_served(
    processes: Processes, sqlite_url: str, tmp_path: Path
) -> None:
    emulator = processes.emulator(speed=20)
    service = processes.service(sqlite_url, emulator=emulator, label="writing")
    listening = f"listening on {service.url} (Novita mode, store sqlite:{sqlite_url.split(':///', 1)[1]})"
    assert listening in service.stdout_path.read_text()

    writer = Writer(service)
    writer.start()
    wait_for(lambda: len(writer.created) >= 10 or None, timeout=TIMEOUT, what="ten creates before the backup")
    backup = tmp_path / "backups" / "novita-gpu.backup.db"
    backup.parent.mkdir()
    began = time.monotonic()
    result = db("backup", str(backup), url=sqlite_url, cwd=tmp_path)
    ended = time.monotonic()
    wait_for(lambda: any(at > ended for at, _ in writer.created) or None, timeout=TIMEOUT, what="creates after it")
    writer.stop.set()
    writer.join(timeout=TIMEOUT)
    assert writer.error is None, writer.error
    assert ok(result).startswith(f"backed up {sqlite_url.split(':///', 1)[1]} to {backup} (")
    assert any(began < at < ended for at, _ in writer.created), "no create was answered during the backup"

    # One self-contained file (no -wal to copy along), readable by its owner only, intact.
    assert not Path(f"{backup}-wal").exists()
    assert backup.stat().st_mode & 0o777 == 0o600
    with sqlite3.connect(backup) as copy:
        assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)

    service.terminate()
    restored = tmp_path / "restored" / "novita-gpu.db"
    restored.parent.mkdir()
    restored.write_bytes(backup.read_bytes())
    again = processes.service(f"sqlite:///{restored}", emulator=emulator, label="restored")

    created_ids = [instance_id for _, instance_id in writer.created]
    before = [instance_id for at, instance_id in writer.created if at < began]
    with Client(again.url) as client:
        served = {instance["instanceId"]: instance for instance in client.iter_instances()}
        # A consistent snapshot: every create answered before the backup began, then the ones that
        # committed during it, in order; never one with a gap before it, never one from after it.
        assert set(served) == set(created_ids[: len(served)]), (len(served), len(created_ids))
        assert set(before) <= set(served)
        assert len(served) < len(created_ids)
        for index, instance_id in enumerate(created_ids[: len(served)]):
            instance = client.get(instance_id)
            assert instance["name"] == f"backup-{index:03d}"
            assert instance["productName"] == "RTX 4090 24GB"
            assert client.events(instance_id)["events"], instance_id  # its history came along
