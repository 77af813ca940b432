"""A service that cannot help: one that answers 503 (as it does within 5 s while Novita is unreachable),
one that answers 503 at once asking to be called again in 5 s, and one that accepts connections but never
answers. Each `novita-gpu` command gives up within 10 s, as a user runs it (a process of its own, timed
from start to exit), unless told to wait longer with --retry-for."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.e2e.processes import NOVITA_GPU

LIMIT = 10.0  # seconds a command may take, start-up included
NO_CONFIG = Path(__file__).parent / "no-such-config-dir"
# One command of each kind: a read, a create (a POST with its own retries) and the service's health. Every
# command goes through the same SDK call with the same give-up time; more processes at once on two busy
# cores would time their start-up, not the CLI.
COMMANDS = [
    ["instances", "list"],
    ["instances", "create", "--name", "job-1", "--product", "RTX 4090 24GB", "--template", "pytorch-jupyter"],
    ["health"],
]


def unavailable(delay: float) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def answer(self) -> None:
            time.sleep(delay)  # the service's own wait for Novita before it gives up
            body = json.dumps(
                {"error": {"code": "UPSTREAM_UNAVAILABLE", "message": "Novita is unreachable.", "requestId": "req-1"}}
            ).encode()
            self.send_response(503)
            self.send_header("Content-Type", "application/json")
            self.send_header("Retry-After", "5")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_DELETE = answer

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@pytest.fixture(params=[4.5, 0.0], ids=["503-after-4.5s", "503-at-once"])
def answering_503(request: pytest.FixtureRequest) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), unavailable(request.param))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def silent() -> Iterator[str]:
    """A port whose connections the kernel accepts and nobody ever answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


def run_all(
    url: str, extra: list[str] | None = None, commands: list[list[str]] = COMMANDS, at_once: int = 3
) -> list[tuple[list[str], float, subprocess.CompletedProcess[str]]]:
    """Each command against `url`, `at_once` processes at a time (each one's own, as a user runs it: more at
    once on two busy cores would time their start-up, not the CLI); how long each took, start to exit."""
    env = {"NOVITA_GPU_URL": url, "XDG_CONFIG_HOME": str(NO_CONFIG), "PATH": "/usr/bin:/bin", "COLUMNS": "80"}
    results = []
    for first in range(0, len(commands), at_once):
        started = []
        try:
            for args in commands[first : first + at_once]:
                process = subprocess.Popen(
                    [str(NOVITA_GPU), *(extra or []), *args],
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                started.append((args, time.monotonic(), process))
            for args, began, process in started:
                stdout, stderr = process.communicate(timeout=60)
                took = time.monotonic() - began
                results.append((args, took, subprocess.CompletedProcess(args, process.returncode, stdout, stderr)))
        finally:
            for _, _, process in started:
                if process.poll() is None:
                    process.kill()
                    process.wait()
    return results


def test_a_service_answering_503_is_given_up_on_within_10_s(answering_503: str) -> None:
    for args, took, result in run_all(answering_503):
        assert took < LIMIT, (args, took, result.stderr)
        assert result.returncode == 1, (args, result.returncode, result.stdout, result.stderr)
        assert result.stderr.splitlines()[-1] == (
            "error: UPSTREAM_UNAVAILABLE: Novita is unreachable. (request req-1)"
        ), (args, result.stderr)


def test_a_service_that_never_answers_is_given_up_on_within_10_s(silent: str) -> None:
    for args, took, result in run_all(silent):
        assert took < LIMIT, (args, took, result.stderr)
        assert result.returncode == 2, (args, result.returncode, result.stderr)
        assert f"the service at {silent} did not answer in time" in result.stderr, (args, result.stderr)


def test_retry_for_says_how_long_to_keep_trying(silent: str) -> None:
    [(_, took, result)] = run_all(silent, ["--retry-for", "2"], [["health"]])
    assert result.returncode == 2 and 2 <= took < 6, (took, result.stderr)
    [(_, took, result)] = run_all(silent, [], [["health"]], at_once=1)
    assert result.returncode == 2 and 6 <= took < LIMIT, (took, result.stderr)  # the default: 6 s
