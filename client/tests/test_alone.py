"""The client stands alone: no module of it imports the server (`novita_gpu`), whether or not the server is
installed, and its base install needs httpx only (the command line: typer and rich, its `cli` extra)."""

from __future__ import annotations

import pkgutil
import re
import subprocess
import sys
from importlib.metadata import requires

import novita_gpu_client

# Import every module of the client in a fresh interpreter where `novita_gpu` cannot be imported.
PROBE = """
import importlib, sys
sys.modules["novita_gpu"] = None  # an import of the server raises ImportError
for name in sys.argv[1:]:
    importlib.import_module(name)
print(sorted(m for m in sys.modules if m == "novita_gpu" or m.startswith("novita_gpu.")))
"""


def test_every_module_imports_without_the_server() -> None:
    modules = [info.name for info in pkgutil.walk_packages(novita_gpu_client.__path__, "novita_gpu_client.")]
    assert "novita_gpu_client.cli.plugins" in modules and "novita_gpu_client.core" in modules
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *modules], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['novita_gpu']"  # only the blocker itself


def test_the_base_install_needs_httpx_alone() -> None:
    declared = requires("novita-gpu-client") or []

    def names(extra: str | None) -> list[str]:
        wanted = [r for r in declared if (f'extra == "{extra}"' in r if extra else "extra ==" not in r)]
        return sorted(re.split(r"[^A-Za-z0-9_.-]", r, maxsplit=1)[0] for r in wanted)

    assert names(None) == ["httpx"] and names("cli") == ["rich", "typer"]
