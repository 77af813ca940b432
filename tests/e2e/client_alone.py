"""A fresh virtual environment holding the client distribution alone, as a training script's image gets it:
`pip install ./client` from PyPI (with the lock's versions), measured, then its `cli` extra added.

Built once per test session and shared by the xdist workers: the first to ask builds it under a file lock
in the session's shared temporary directory, and writes what it measured beside it for the others. A test
module's own session fixture returns `shared_client_venv(tmp_path_factory)`.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest

from tests.e2e.processes import clean_environment

REPO = Path(__file__).resolve().parents[2]
PIP_TIMEOUT = 600

# Each installed distribution of the environment and the bytes its files take in site-packages.
SIZES = """
import json, site, sys
from importlib.metadata import distributions
from pathlib import Path
root = Path(site.getsitepackages()[0]).resolve()
sizes = {}
for dist in distributions():
    paths = [Path(dist.locate_file(f)).resolve() for f in dist.files or []]
    sizes[dist.metadata["Name"]] = sum(p.stat().st_size for p in paths if p.is_file() and p.is_relative_to(root))
print(json.dumps(sizes))
"""


# Import runs timed: the fastest is read (`import_ms`); with a parallel test worker busy on the other core,
# a few runs in ten get the machine to themselves.
IMPORT_RUNS = 11


@dataclass(frozen=True)
class ClientVenv:
    root: str
    # What `pip install ./client` added (the client included), with the bytes of each in site-packages.
    packages: dict[str, int]
    # `python -X importtime -c 'import novita_gpu_client'` before the cli extra: for each run, the import's
    # own time as Python reports it (interpreter start-up left out), the process's CPU time and wall time, in ms.
    import_own_ms: list[float]
    import_cpu_ms: list[float]
    import_wall_ms: list[float]
    # `novita-gpu --help` before the cli extra: exit code and stderr.
    without_extra: tuple[int, str]
    # What the cli extra added on top.
    cli_packages: list[str]

    @property
    def python(self) -> Path:
        return Path(self.root) / "bin" / "python"

    @property
    def novita_gpu(self) -> Path:
        return Path(self.root) / "bin" / "novita-gpu"

    @property
    def size_mb(self) -> float:
        return sum(self.packages.values()) / 1e6

    @property
    def import_ms(self) -> float:
        """What `import novita_gpu_client` takes: the fastest of the runs, as timings are read where the
        machine's other work (a parallel test worker, a cold page cache) only ever adds to a run."""
        return min(self.import_own_ms)


def _run(argv: list[str | Path], timeout: float) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(a) for a in argv], env=clean_environment(), capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"{argv} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


def _sizes(python: Path) -> dict[str, int]:
    sizes: dict[str, int] = json.loads(_run([python, "-c", SIZES], timeout=60).stdout)
    return sizes


def _timed_import(python: Path) -> tuple[float, float, float]:
    """(the import's own ms, CPU ms, wall ms) of one `python -X importtime -c 'import novita_gpu_client'`
    (its .pyc files already written)."""
    began = time.perf_counter()
    process = subprocess.Popen(
        [str(python), "-X", "importtime", "-c", "import novita_gpu_client"],
        env=clean_environment(),
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    report = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    assert process.returncode == 0, f"import novita_gpu_client failed\n{report[-2000:]}"
    # The last line is the package's: "import time: <self us> | <cumulative us> | novita_gpu_client".
    cumulative_us = int(report.strip().splitlines()[-1].split("|")[1])
    return cumulative_us / 1000, (usage.ru_utime + usage.ru_stime) * 1000, (time.perf_counter() - began) * 1000


def build(root: Path) -> ClientVenv:
    for left in ("client-src", "client-venv"):  # by a build that failed half way
        shutil.rmtree(root / left, ignore_errors=True)
    # A copy of client/ without what builds or tests leave there (pip builds a local project in place).
    source = root / "client-src"
    shutil.copytree(
        REPO / "client",
        source,
        ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", ".pytest_cache", "tests"),
    )
    venv = root / "client-venv"
    _run([sys.executable, "-m", "venv", venv], timeout=120)
    python = venv / "bin" / "python"
    pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-c", REPO / "requirements.lock"]
    before = _sizes(python)  # pip and setuptools, which the venv starts with
    _run([*pip, source], timeout=PIP_TIMEOUT)
    after = _sizes(python)
    packages = {name: size for name, size in after.items() if name not in before}
    _timed_import(python)  # the first run writes the .pyc files of what pip did not compile
    runs = [_timed_import(python) for _ in range(IMPORT_RUNS)]
    helped = subprocess.run(
        [str(venv / "bin" / "novita-gpu"), "--help"],
        env=clean_environment(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    _run([*pip, f"{source}[cli]"], timeout=PIP_TIMEOUT)
    return ClientVenv(
        str(venv),
        packages,
        [own for own, _, _ in runs],
        [cpu for _, cpu, _ in runs],
        [wall for _, _, wall in runs],
        (helped.returncode, helped.stderr),
        sorted(set(_sizes(python)) - set(after)),
    )


def shared_client_venv(tmp_path_factory: pytest.TempPathFactory) -> ClientVenv:
    """The session's environment, built by whichever worker asks first."""
    # Under xdist each worker has its own base temp directory; their parent is the session's, shared.
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    root = shared / "client-alone"
    root.mkdir(exist_ok=True)
    measured = root / "measured.json"
    with (root / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not measured.exists():
                measured.write_text(json.dumps(asdict(build(root))))
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    data = json.loads(measured.read_text())
    data["without_extra"] = tuple(data["without_extra"])
    return ClientVenv(**data)
