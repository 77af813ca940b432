"""`novita-gpu serve` bounds each connection by its settings (kit/connections.py): a client whose request
headers never end is cut at HEADER_READ_TIMEOUT_SECONDS with a 408, one over MAX_CONNECTIONS is answered
503 at once, and a client that asks as clients do is served."""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest

from tests.e2e.conftest import Processes
from tests.e2e.processes import wait_for

pytestmark = pytest.mark.e2e

HEADER_TIMEOUT = 1.0


def raw(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def read_until_closed(sock: socket.socket) -> bytes:
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def test_the_service_cuts_slow_headers_and_caps_connections(sqlite_url: str, processes: Processes) -> None:
    env = {"HEADER_READ_TIMEOUT_SECONDS": str(HEADER_TIMEOUT), "MAX_CONNECTIONS": "8"}
    service = processes.service(sqlite_url, env=env)

    # A header line every 200 ms, never the end of the headers: cut one deadline after the first byte.
    with raw(service.port) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\n")
        began = time.monotonic()
        sock.settimeout(0.2)
        answer = b""
        for line in range(200):
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                sock.sendall(b"X-Slow-%d: 1\r\n" % line)
                continue
            answer += chunk
            if not chunk:
                break
        cut_after = time.monotonic() - began
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["error"]["code"] == "REQUEST_TIMEOUT"
    assert HEADER_TIMEOUT * 0.8 <= cut_after < HEADER_TIMEOUT + 3, cut_after

    # Eight idle connections fill the cap: the ninth is answered 503 at once, before it asks anything.
    held = [raw(service.port) for _ in range(8)]
    try:
        with raw(service.port) as over:
            refused = read_until_closed(over)
        assert refused.startswith(b"HTTP/1.1 503 "), refused
        assert json.loads(refused.partition(b"\r\n\r\n")[2])["error"]["code"] == "TOO_MANY_CONNECTIONS"
    finally:
        for sock in held:
            sock.close()

    # The held connections are given back; an ordinary client is served.
    served = wait_for(
        lambda: httpx.get(f"{service.url}/health", timeout=5).status_code == 200 or None,
        timeout=10,
        what="/health to answer once the cap has room",
    )
    assert served
