"""docs/deployment.md, section 10 (two replicas on PostgreSQL without containers), run as written: its shell
blocks start a standalone emulator and two `novita-gpu serve` processes on one PostgreSQL database, then
check /health on each and create an instance through one replica and follow it through the other. Only
what cannot be run here as printed is replaced: the createuser/createdb lines (a fresh database instead),
the database URL, the ports (free ones, so parallel runs do not collide) and HOME (a temporary one)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.databases import empty_postgres_database

pytestmark = [pytest.mark.postgres, pytest.mark.e2e]

GUIDE = Path(__file__).resolve().parents[3] / "docs" / "deployment.md"
SECTION = "## 10. Two replicas on PostgreSQL, without containers"
DATABASE_LINE = "export DATABASE_URL='postgresql://novita:PASSWORD@127.0.0.1:5432/novita'   # the password you chose"
BIN = Path(sys.executable).parent  # novita-gpu of this environment


def section_blocks() -> list[str]:
    text = GUIDE.read_text()
    start = text.index(SECTION)
    section = text[start : text.index("\n## ", start + len(SECTION))]
    return re.findall(r"```bash\n(.*?)```", section, re.S)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def database_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database, dropped afterwards (as the guide's createdb would make)."""
    with empty_postgres_database("docs", drivername="postgresql") as url:
        yield url


def running(pid: int) -> bool:
    """Alive and not a zombie (the shell that started it is gone: init reaps it, or may not)."""
    if Path("/proc").is_dir():
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except FileNotFoundError:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def stop(pids: list[int]) -> None:
    """SIGTERM, as the guide says to stop a replica; SIGKILL what is still there after 30 s."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    for pid in pids:
        while time.monotonic() < deadline and running(pid):
            time.sleep(0.2)
        if running(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_the_section_has_the_blocks_this_test_runs() -> None:
    setup, check, share = section_blocks()
    assert "createuser -h 127.0.0.1 -U postgres --pwprompt novita\n" in setup
    assert "createdb -h 127.0.0.1 -U postgres --owner novita novita\n" in setup
    assert DATABASE_LINE in setup
    assert "novita-gpu emulator --port 4000 --state" in setup
    assert "NOVITA_API_BASE_URL=http://127.0.0.1:4000/gpu-instance/openapi" in setup
    assert "PORT=3001 novita-gpu serve" in setup and "PORT=3002 novita-gpu serve" in setup
    assert "/health" in check and "3001" in share and "3002" in share


@pytest.mark.skipif(not (shutil.which("jq") and shutil.which("curl")), reason="the guide's commands use jq and curl")
def test_two_replicas_without_containers_as_the_guide_says(database_url: str, tmp_path: Path) -> None:
    ports = {"3001": str(free_port()), "3002": str(free_port()), "4000": str(free_port())}

    def adapt(block: str) -> str:
        for documented, port in ports.items():
            block = re.sub(rf"\b{documented}\b", port, block)
        return block

    setup, check, share = (adapt(block) for block in section_blocks())
    setup = "\n".join(line for line in setup.splitlines() if not line.startswith(("createuser ", "createdb ")))
    setup = setup.replace(DATABASE_LINE, f"export DATABASE_URL='{database_url}'")
    home = tmp_path / "home"
    home.mkdir()
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("NOVITA_", "API_KEYS", "DATABASE_URL", "PORT"))},
        "HOME": str(home),
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
    }
    workdir = home / "novita-gpu"

    def run(script: str) -> str:
        done = subprocess.run(
            ["bash", "-c", "set -e\n" + script],
            capture_output=True,
            text=True,
            timeout=90,
            env=environment,
            cwd=workdir if workdir.exists() else home,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    run(setup + "\njobs -p > started.pids\n")
    pids = [int(pid) for pid in (workdir / "started.pids").read_text().split()]
    assert len(pids) == 3  # the emulator and two replicas
    try:
        deadline = time.monotonic() + 60
        logs = [workdir / "replica-1.log", workdir / "replica-2.log"]
        while not all(log.exists() and '"event":"listening"' in log.read_text() for log in logs):
            assert time.monotonic() < deadline, [log.read_text()[-2000:] for log in logs if log.exists()]
            time.sleep(0.2)

        lines = run(check).splitlines()
        assert len(lines) == 4, lines
        announced = [
            re.fullmatch(r"novita-gpu \S+ listening on (\S+) \(Novita mode, store (\S+)\)", x) for x in lines[:2]
        ]
        assert all(announced), lines
        urls = {match.group(1) for match in announced if match}
        assert urls == {f"http://127.0.0.1:{ports['3001']}", f"http://127.0.0.1:{ports['3002']}"}, lines
        stores = {match.group(2) for match in announced if match}
        assert len(stores) == 1 and database_url.rsplit("/", 1)[1] in stores.pop(), lines  # one database
        for line in lines[2:]:
            report = json.loads(line)
            assert report["status"] == "healthy" and report["mode"] == "novita", report
            assert report["database"] == "up" and report["novita"] in ("up", "unknown"), report

        ready, deleted = (json.loads(line) for line in run(share).splitlines())
        assert ready["status"] == "ready" and ready["novitaInstanceId"], ready
        assert deleted == {"status": "terminating"}
    finally:
        stop(pids)
