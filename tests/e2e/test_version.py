"""`novita-gpu --version`: what an operator checks first, and what a bug report asks for."""

from __future__ import annotations

import subprocess

from novita_gpu import __version__
from tests.e2e.processes import NOVITA_GPU, clean_environment


def test_version_prints_the_version_and_exits_0() -> None:
    result = subprocess.run(
        [str(NOVITA_GPU), "--version"], env=clean_environment(), capture_output=True, text=True, timeout=30
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, f"novita-gpu {__version__}\n", "")
