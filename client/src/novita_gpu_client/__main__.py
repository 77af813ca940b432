"""`novita-gpu` (the console script) and `python -m novita_gpu_client`: the command line.

It needs the `cli` extra (typer, rich), which the SDK alone does not: without it, one line on stderr says
how to install it, and the exit code is 1.
"""

from __future__ import annotations

import sys

# The top-level modules the `cli` extra brings (typer needs click).
CLI_EXTRA = frozenset({"typer", "rich", "click"})
MISSING_EXTRA = (
    "error: the novita-gpu command needs the client's cli extra (typer, rich): "
    "pip install 'novita-gpu-client[cli]' (from a checkout: pip install './client[cli]')"
)


def main() -> None:
    try:
        from novita_gpu_client.cli import app
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] not in CLI_EXTRA:
            raise
        sys.exit(MISSING_EXTRA)
    app()


if __name__ == "__main__":
    main()
