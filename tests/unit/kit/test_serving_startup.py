"""serve_forever reports a failed start-up of the app as an exception (for the CLI's one line) instead of
uvicorn's logged traceback and exit; and the CLI maps a newer store found by the app to exit code 2."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator

import pytest
import typer
from starlette.applications import Starlette

from novita_gpu.cli.server import _startup_failed
from novita_gpu.kit.migrations import StoreTooNew
from novita_gpu.kit.serving import CannotListen, StartupFailed, bound_socket, serve_forever
from novita_gpu.observability.logging import configure_logging


def app_failing_with(error: Exception) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        raise error
        yield

    return Starlette(lifespan=lifespan)


def test_a_failed_start_up_raises_with_its_cause_and_logs_no_traceback(capfd: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "json")  # as `serve` runs: the traceback is logged at debug only
    newer = StoreTooNew(["9999"], "the store at sqlite:store.db")
    with pytest.raises(StartupFailed) as failed:
        serve_forever(app_failing_with(newer), bound_socket("127.0.0.1", 0))
    assert failed.value.__cause__ is newer
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err


def test_the_app_finding_a_newer_store_exits_2_with_its_message(capsys: pytest.CaptureFixture[str]) -> None:
    """Reached when a newer release migrates the store between `serve`'s migration and the app's."""
    with pytest.raises(typer.Exit) as exited:
        _startup_failed(StoreTooNew(["9999"], "the store at sqlite:store.db"))
    assert exited.value.exit_code == 2
    assert capsys.readouterr().err == (
        "error: the store at sqlite:store.db was migrated by a newer novita-gpu (revision 9999); upgrade this one\n"
    )


def test_on_started_runs_once_the_socket_listens() -> None:
    sock = bound_socket("127.0.0.1", 0)
    port = int(sock.getsockname()[1])
    seen: list[bool] = []

    def started() -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            seen.append(True)
        raise SystemExit(0)  # stop here: the test only needs the moment it was called

    with pytest.raises(SystemExit):
        serve_forever(Starlette(), sock, on_started=started)
    assert seen == [True]


def test_a_port_in_use_is_cannot_listen_naming_the_address() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = int(taken.getsockname()[1])
        with pytest.raises(CannotListen) as refused:
            bound_socket("127.0.0.1", port)
    assert str(refused.value) == f"cannot listen on 127.0.0.1:{port}: Address already in use"
    assert isinstance(refused.value, OSError)
