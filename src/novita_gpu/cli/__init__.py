"""The server's commands of `novita-gpu`: `serve` and `emulator` (server.py), `db` (db.py).

The command line itself is the client distribution's (novita_gpu_client.cli, with its `novita-gpu` script).
This distribution declares its commands in the entry-point group `novita_gpu.commands` (pyproject.toml),
which the client's command line loads: installing the server adds them to the same `novita-gpu`.

`app` is that whole command line, client and server commands, for code that runs it from here.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    # Loaded on first use: the client's command line loads server.py and db.py through their entry points,
    # which import this package first.
    if name == "app":
        from novita_gpu_client.cli import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
