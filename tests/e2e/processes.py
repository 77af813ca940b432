"""Real `novita-gpu` processes for end-to-end tests: start on a free port, wait until they answer, kill.

Each process runs in its own session (process group), so `kill9()` / `terminate()` reach the whole tree.
Its stdout and stderr go to files under `log_dir`, one pair per start, so a restarted server keeps the
logs of its earlier life for the failure report.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

import httpx

from novita_gpu.kit.serving import free_port
from novita_gpu.kit.settings import Settings

NOVITA_GPU = Path(sys.executable).parent / "novita-gpu"
POLL_SECONDS = 0.05
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
PORT_TRIES = 3

T = TypeVar("T")


def wait_for(check: Callable[[], T | None], *, timeout: float, what: str) -> T:
    """Call `check` every 50 ms until it returns something other than None; fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            value = check()
        except (httpx.HTTPError, OSError) as exc:
            value, last_error = None, exc
        if value is not None:
            return value
        if time.monotonic() >= deadline:
            suffix = f" (last error: {last_error!r})" if last_error else ""
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}{suffix}")
        time.sleep(POLL_SECONDS)


def clean_environment() -> dict[str, str]:
    """This environment minus every variable our Settings read, so the host's config cannot leak in."""
    ours = {name.upper() for name in Settings.model_fields}
    return {key: value for key, value in os.environ.items() if key.upper() not in ours}


def tail(path: Path, lines: int = 40) -> str:
    if not path.exists():
        return "(no file)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


class ManagedProcess(ABC):
    """One `novita-gpu` subcommand; subclasses say how to build its command line and when it is up."""

    def __init__(self, label: str, log_dir: Path, env: Mapping[str, str] | None = None) -> None:
        self.label = label
        self.log_dir = log_dir
        self.extra_env = dict(env or {})
        self.port = 0
        self.starts = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def stdout_path(self) -> Path:
        return self.log_dir / f"{self.label}.{self.starts}.stdout.log"

    @property
    def stderr_path(self) -> Path:
        return self.log_dir / f"{self.label}.{self.starts}.stderr.log"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @abstractmethod
    def command(self) -> list[str]: ...

    @abstractmethod
    def ready_path(self) -> str:
        """A path that answers 200 once the process is ready."""

    def start(self) -> None:
        """Start on a fresh free port and return once it answers `ready_path()` with 200. A port that another
        process took between `free_port()` and the bind (a restarted built-in emulator takes its old port
        back, for one) is tried again on another port, at most PORT_TRIES times."""
        assert not self.running, f"{self.label} is already running"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = {**clean_environment(), **self.extra_env}
        for attempt in range(1, PORT_TRIES + 1):
            self.starts += 1
            self.port = free_port()
            with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
                self._proc = subprocess.Popen(
                    self.command(), cwd=self.log_dir, env=env, stdout=out, stderr=err, start_new_session=True
                )
            try:
                wait_for(self._answers, timeout=START_TIMEOUT, what=f"{self.label} to answer {self.ready_path()}")
                return
            except Exception as exc:
                self.kill9()
                if attempt < PORT_TRIES and "Address already in use" in self.stderr_path.read_text(errors="replace"):
                    continue
                raise RuntimeError(f"{self.label} did not start: {exc} (logs in {self.log_dir})") from exc

    def _answers(self) -> bool | None:
        if self._proc is not None and self._proc.poll() is not None:
            raise RuntimeError(f"{self.label} exited with code {self._proc.returncode}")
        response = httpx.get(self.url + self.ready_path(), timeout=1.0)
        return True if response.status_code == 200 else None

    def kill9(self) -> None:
        """SIGKILL the whole process group: no shutdown code runs, exactly like a crash."""
        self._signal(signal.SIGKILL)
        if self._proc is not None:
            self._proc.wait(timeout=STOP_TIMEOUT)

    def terminate(self) -> None:
        """SIGTERM (graceful shutdown), then SIGKILL if it has not exited within the stop timeout."""
        self._signal(signal.SIGTERM)
        if self._proc is None:
            return
        try:
            self._proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill9()

    def _signal(self, signum: signal.Signals) -> None:
        if self._proc is None or self._proc.poll() is not None:
            return
        try:
            os.killpg(self._proc.pid, signum)
        except ProcessLookupError:
            return

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of every start's stdout and stderr."""
        parts = []
        for start in range(1, self.starts + 1):
            for stream in ("stdout", "stderr"):
                path = self.log_dir / f"{self.label}.{start}.{stream}.log"
                parts.append(f"--- {self.label} start {start} {stream} ({path}) ---\n{tail(path, lines)}")
        return "\n".join(parts)


class EmulatorProcess(ManagedProcess):
    """`novita-gpu emulator`: a Novita stand-in that outlives the service when the service is killed."""

    def __init__(self, label: str, log_dir: Path, speed: float) -> None:
        super().__init__(label, log_dir)
        self.speed = speed

    @property
    def api_base_url(self) -> str:
        return f"{self.url}/gpu-instance/openapi"

    def command(self) -> list[str]:
        return [
            str(NOVITA_GPU),
            "emulator",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--speed",
            str(self.speed),
        ]

    def ready_path(self) -> str:
        return "/_emulator/stats"

    def upstream_instances(self) -> list[dict[str, object]]:
        """Every instance the emulator holds, with its true status (the control API's view)."""
        response = httpx.get(f"{self.url}/_emulator/instances", timeout=5.0)
        response.raise_for_status()
        instances: list[dict[str, object]] = response.json()["instances"]
        return instances


class ServiceProcess(ManagedProcess):
    """`novita-gpu serve` on a store given by `database_url`, against `emulator` or the built-in one."""

    def __init__(
        self,
        label: str,
        log_dir: Path,
        database_url: str,
        emulator: EmulatorProcess | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        settings = {"DATABASE_URL": database_url, "LOG_FORMAT": "json", "LOG_LEVEL": "INFO"}
        if emulator is not None:
            assert emulator.running, "start the emulator first: the service needs its port"
            settings["NOVITA_API_KEY"] = "e2e-test-key"
            settings["NOVITA_API_BASE_URL"] = emulator.api_base_url
        super().__init__(label, log_dir, {**settings, **(env or {})})

    def command(self) -> list[str]:
        return [str(NOVITA_GPU), "serve", "--host", "127.0.0.1", "--port", str(self.port)]

    def ready_path(self) -> str:
        return "/health"
