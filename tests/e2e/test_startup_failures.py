"""Every way `novita-gpu serve` can fail to start, as an operator meets it: one line on stderr starting
with `error:` (no traceback anywhere on stderr) and a non-zero exit code, 2 for configuration to fix and
1 for the environment. (A store migrated by a newer version: tests/integration/kit/test_migrations.py.)"""

from __future__ import annotations

import ctypes
import os
import socket
import subprocess
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from novita_gpu.kit.serving import free_port
from tests.e2e.processes import NOVITA_GPU, clean_environment

pytestmark = pytest.mark.e2e

TIMEOUT = 60.0
CONFIG_ERROR, ENVIRONMENT_ERROR = 2, 1


def serve(
    tmp_path: Path,
    env: Mapping[str, str],
    *args: str,
    preexec_fn: Callable[[], None] | None = None,
) -> subprocess.CompletedProcess[str]:
    """`novita-gpu serve` as systemd would run it, expected to give up on its own."""
    store = f"sqlite+aiosqlite:///{tmp_path / 'data' / 'novita-gpu.db'}"
    return subprocess.run(
        [str(NOVITA_GPU), "serve", *args],
        env={**clean_environment(), "DATABASE_URL": store, "LOG_FORMAT": "json", **env},
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=tmp_path,
        preexec_fn=preexec_fn,
    )


def only_line(result: subprocess.CompletedProcess[str], code: int) -> str:
    """The single line on stderr, after checking the exit code and that nothing printed a traceback."""
    context = f"exit {result.returncode}\nstderr:\n{result.stderr}\nstdout:\n{result.stdout[-3000:]}"
    assert result.returncode == code, context
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), context
    assert "Traceback" not in result.stdout, context
    return lines[0]


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port another process (here: this one) listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_a_port_in_use_is_one_line_before_the_store_is_touched(tmp_path: Path, busy_port: int) -> None:
    result = serve(tmp_path, {"PORT": str(busy_port)})
    line = only_line(result, ENVIRONMENT_ERROR)
    assert line == (
        f"error: cannot listen on 127.0.0.1:{busy_port}: Address already in use "
        "(another process has it: choose another port with PORT or --port)"
    )
    assert not (tmp_path / "data").exists()


def test_a_flag_port_in_use_is_the_same_line(tmp_path: Path, busy_port: int) -> None:
    line = only_line(serve(tmp_path, {}, "--port", str(busy_port)), ENVIRONMENT_ERROR)
    assert line.startswith(f"error: cannot listen on 127.0.0.1:{busy_port}: Address already in use")


def test_an_address_not_on_this_machine(tmp_path: Path) -> None:
    line = only_line(serve(tmp_path, {"HOST": "192.0.2.1", "API_KEYS": "k" * 32}), ENVIRONMENT_ERROR)
    assert line == "error: cannot listen on 192.0.2.1:3000: Cannot assign requested address"


def test_an_unreachable_database_is_named_without_its_password(tmp_path: Path) -> None:
    url = f"postgres://novita:hunter22@127.0.0.1:{free_port()}/novita"  # pasted spelling, nobody listening
    result = serve(tmp_path, {"DATABASE_URL": url, "PORT": str(free_port())})
    line = only_line(result, ENVIRONMENT_ERROR)
    assert line.startswith("error: cannot use the store at postgresql+asyncpg://novita:***@127.0.0.1:"), line
    assert "hunter22" not in result.stderr + result.stdout


def _without_dac_override() -> None:
    """In the child: root that obeys file permissions (drop CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from
    the bounding set, so the exec'd process does not get them back)."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def test_a_data_directory_that_is_not_writable(tmp_path: Path) -> None:
    read_only = tmp_path / "read-only"
    read_only.mkdir(mode=0o555)
    read_only.chmod(0o555)
    preexec = _without_dac_override if os.geteuid() == 0 else None
    store = read_only / "data" / "novita-gpu.db"
    try:
        result = serve(tmp_path, {"DATABASE_URL": f"sqlite:///{store}", "PORT": str(free_port())}, preexec_fn=preexec)
    finally:
        read_only.chmod(0o755)
    line = only_line(result, ENVIRONMENT_ERROR)
    assert line == f"error: cannot use the store at sqlite+aiosqlite:///{store}: Permission denied: {store.parent}"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"PORT": "abc"}, "error: PORT: Input should be a valid integer (got 'abc')"),
        ({"EMULATOR_SPEED": "0"}, "error: EMULATOR_SPEED: Input should be greater than 0 (got '0')"),
        ({"LOG_LEVEL": "loud"}, "error: LOG_LEVEL: use DEBUG, INFO, WARNING, ERROR or CRITICAL (got 'loud')"),
        (
            {"DATABASE_URL": "mysql://app:hunter22@db/novita"},
            "error: DATABASE_URL: unsupported database 'mysql': use PostgreSQL "
            "(postgresql://user:password@host:5432/db) or SQLite (sqlite:///./data/novita-gpu.db)",
        ),
        (
            {"PORT": "abc", "LOG_FORMAT": "xml"},
            "error: PORT: Input should be a valid integer (got 'abc'); "
            "LOG_FORMAT: Input should be 'json' or 'console' (got 'xml')",
        ),
    ],
)
def test_bad_configuration_values_name_the_variable_and_why(tmp_path: Path, env: dict[str, str], expected: str) -> None:
    result = serve(tmp_path, env)
    assert only_line(result, CONFIG_ERROR) == expected
    assert not (tmp_path / "data").exists()


def test_an_insecure_configuration_is_refused(tmp_path: Path) -> None:
    line = only_line(serve(tmp_path, {"HOST": "0.0.0.0"}), CONFIG_ERROR)
    assert line.startswith("error: Refusing to listen on '0.0.0.0' without authentication:"), line


def test_a_failure_in_the_apps_own_start_up_is_one_line_too(tmp_path: Path, busy_port: int) -> None:
    """The built-in emulator is started by the app (its lifespan), after the store is migrated: uvicorn
    used to log the traceback and exit with its own code."""
    line = only_line(serve(tmp_path, {"EMULATOR_PORT": str(busy_port), "PORT": str(free_port())}), ENVIRONMENT_ERROR)
    assert line == (
        f"error: the service did not start: the built-in emulator cannot listen on 127.0.0.1:{busy_port}: "
        "Address already in use (EMULATOR_PORT; 0 picks a free one)"
    )
