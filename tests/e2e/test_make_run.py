"""`make run` takes its address from HOST and PORT (it used to pass --host/--port 127.0.0.1:3000, which
win over both), and its start-up log says in one line where it listens and in which mode."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from novita_gpu.kit.serving import free_port
from tests.e2e.processes import START_TIMEOUT, STOP_TIMEOUT, clean_environment, wait_for

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


def test_make_run_listens_on_host_and_port_from_the_environment(tmp_path: Path) -> None:
    port = free_port("127.0.0.2")
    store = tmp_path / "data" / "novita-gpu.db"
    env = {
        **{k: v for k, v in clean_environment().items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")},
        "HOST": "127.0.0.2",  # loopback, but not make run's default
        "PORT": str(port),
        "DATABASE_URL": f"sqlite:///{store}",
        "LOG_FORMAT": "json",
    }
    log = tmp_path / "make-run.log"
    with log.open("wb") as out:
        # -o: never reinstall the shared .venv from a test, even when pyproject.toml is newer than its stamp.
        make = subprocess.Popen(
            ["make", "--no-print-directory", "-o", ".venv/.installed-runtime", "-C", str(REPO), "run"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:

        def healthy() -> bool | None:
            assert make.poll() is None, log.read_text()
            return httpx.get(f"http://127.0.0.2:{port}/health", timeout=1.0).status_code == 200 or None

        wait_for(healthy, timeout=START_TIMEOUT, what="make run to answer on PORT")
        expected = f"listening on http://127.0.0.2:{port} (emulator mode, store sqlite:{store})"
        assert expected in log.read_text(), log.read_text()
        assert store.exists()
    finally:
        os.killpg(make.pid, signal.SIGTERM)
        try:
            make.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(make.pid, signal.SIGKILL)
            make.wait()


def _make_would_run(target: str) -> str:
    """The commands `make TARGET` would run were every dependency file newer than the environment."""
    env = {k: v for k, v in clean_environment().items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    done = subprocess.run(
        ["make", "--no-print-directory", "-n", "-B", "-C", str(REPO), target],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def test_make_run_installs_the_runtime_only_and_make_test_the_tools() -> None:
    run = _make_would_run("run")
    assert "-e ." in run and "[dev]" not in run, run
    assert "[dev]" in _make_would_run("test")
    assert "[dev]" in _make_would_run("lint")
