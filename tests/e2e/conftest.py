"""Fixtures for end-to-end tests: real processes (always cleaned up), a fresh store per test, and the
processes' log tails attached to the report of a failing test."""

from __future__ import annotations

from collections.abc import Generator, Iterator, Mapping
from pathlib import Path

import pytest

from tests.e2e.processes import EmulatorProcess, ManagedProcess, ServiceProcess
from tests.fixtures.databases import empty_postgres_database


class Processes:
    """Starts `novita-gpu` processes for one test and kills every one of them at the end."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[ManagedProcess] = []

    def emulator(self, speed: float, label: str = "emulator") -> EmulatorProcess:
        emulator = EmulatorProcess(label, self.log_dir, speed)
        self._start(emulator)
        return emulator

    def service(
        self,
        database_url: str,
        *,
        emulator: EmulatorProcess | None = None,
        env: Mapping[str, str] | None = None,
        label: str = "service",
    ) -> ServiceProcess:
        service = ServiceProcess(label, self.log_dir, database_url, emulator=emulator, env=env)
        self._start(service)
        return service

    def _start(self, process: ManagedProcess) -> None:
        self.started.append(process)
        process.start()

    def kill_all(self) -> None:
        for process in reversed(self.started):
            process.kill9()

    def log_tails(self) -> str:
        return "\n".join(process.log_tail() for process in self.started)


PROCESSES = pytest.StashKey[Processes]()


@pytest.fixture
def processes(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Processes]:
    procs = Processes(tmp_path / "logs")
    request.node.stash[PROCESSES] = procs
    try:
        yield procs
    finally:
        procs.kill_all()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    procs = item.stash.get(PROCESSES, None)
    if procs is not None and report.failed and report.when in ("setup", "call"):
        report.sections.append(("novita-gpu process logs", procs.log_tails()))
    return report


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'novita-gpu.db'}"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for this test only, dropped afterwards."""
    with empty_postgres_database("e2e") as url:
        yield url
