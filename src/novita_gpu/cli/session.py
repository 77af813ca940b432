"""What every client command shares: its options (service URL, API key, --json) and one SDK client
whose errors become a line on stderr and the exit code (1: the API said no, 2: no service there)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Annotated

import typer

from novita_gpu.sdk import ApiError, Client, InstanceFailed, ServiceConnectionError, WaitTimeout

Url = Annotated[str, typer.Option("--url", envvar="NOVITA_GPU_URL", help="The service's base URL.")]
ApiKey = Annotated[
    str | None,
    typer.Option("--api-key", envvar="NOVITA_GPU_API_KEY", help="API key, sent as a Bearer token.", show_default=False),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print the server's JSON instead of a table.")]
InstanceId = Annotated[str, typer.Argument(help="Instance id (inst_...).")]
OptionalId = Annotated[str | None, typer.Argument(help="Instance id (inst_...); or use --name.", show_default=False)]
ByName = Annotated[str | None, typer.Option("--name", help="Act on the live instance with this name instead.")]


def fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=code)


@contextlib.contextmanager
def client_for(url: str, api_key: str | None) -> Iterator[Client]:
    """A client for one command; SDK errors become a line on stderr and the exit code."""
    try:
        with Client(url, api_key=api_key) as client:
            yield client
    except ApiError as exc:
        raise fail(f"{exc.code}: {exc.message} (request {exc.request_id or 'unknown'})", 1) from exc
    except (InstanceFailed, WaitTimeout) as exc:
        raise fail(str(exc), 1) from exc
    except ServiceConnectionError as exc:
        raise fail(f"{exc}. Is `novita-gpu serve` running there? (--url / NOVITA_GPU_URL)", 2) from exc
