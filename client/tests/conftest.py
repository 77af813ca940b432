"""A stand-in for the service, for the client's tests: they run with the client alone installed (no server).

`FakeService` is a real HTTP server on a loopback port, in a thread; each test says how it answers
(`route`), and every request it received is kept (`requests`). An answer is `(status, body)`, with
headers as a third item; a `str` body is sent as it is, a list of lines as a Server-Sent Events stream
that ends by closing the connection.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from novita_gpu_client import AsyncClient, Client, RetryPolicy


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None


Answer = tuple[int, Any] | tuple[int, Any, dict[str, str]]
Handler = Callable[[Request], Answer]


@dataclass
class FakeService:
    routes: dict[tuple[str, str], Handler] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    url: str = ""

    def route(self, method: str, path: str, handler: Handler | Answer) -> None:
        self.routes[(method, path)] = handler if callable(handler) else (lambda _request: handler)

    def answer(self, request: Request) -> Answer:
        self.requests.append(request)
        handler = self.routes.get((request.method, request.path))
        if handler is None:
            return 404, {"error": {"code": "NOT_FOUND", "message": "No such route.", "requestId": "req-404"}}
        return handler(request)

    def sent(self, method: str, path: str) -> list[Request]:
        return [r for r in self.requests if (r.method, r.path) == (method, path)]


def _handler_for(service: FakeService) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _serve(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length) if length else b""
            request = Request(
                self.command,
                parts.path,
                parse_qs(parts.query),
                {k.lower(): v for k, v in self.headers.items()},
                json.loads(raw) if raw else None,
            )
            status, body, *rest = service.answer(request)
            headers = rest[0] if rest else {}
            if isinstance(body, list):  # an event stream: written line by line, ended by closing
                self.send_response(status)
                self.send_header("Content-Type", "text/event-stream")
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                for line in body:
                    self.wfile.write(f"{line}\n".encode())
                    self.wfile.flush()
                return
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain" if isinstance(body, str) else "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    return Handler


@pytest.fixture
def service() -> Iterator[FakeService]:
    fake = FakeService()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(fake))
    server.daemon_threads = True
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()


# Each scenario of test_both_clients.py and test_volumes.py runs through both clients (`run`).
FAST = RetryPolicy(attempts=3, backoff=0.01, max_delay=0.05)
Scenario = Callable[[Any], Coroutine[Any, Any, None]]


async def answer(value: Any) -> Any:
    """What a method gives: the answer (blocking client) or the awaitable of it (asyncio client)."""
    return await value if inspect.isawaitable(value) else value


async def items(iterable: Iterable[Any] | AsyncIterator[Any], at_most: int | None = None) -> list[Any]:
    """The items of a plain or async iterator (the first `at_most`, then the iterator is closed)."""
    got: list[Any] = []
    if isinstance(iterable, AsyncIterator):
        async for item in iterable:
            got.append(item)
            if at_most is not None and len(got) == at_most:
                await iterable.aclose()  # type: ignore[attr-defined]
                break
        return got
    for item in iterable:
        got.append(item)
        if at_most is not None and len(got) == at_most:
            iterable.close()  # type: ignore[attr-defined]
            break
    return got


@pytest.fixture(params=["blocking", "asyncio"])
def run(request: pytest.FixtureRequest, service: FakeService) -> Callable[[Scenario], None]:
    """Run a scenario with a client of the kind this test is parametrized with."""

    def runner(scenario: Scenario) -> None:
        async def main() -> None:
            if request.param == "blocking":
                with Client(service.url, api_key="sk-test", retry=FAST, timeout=5) as client:
                    await scenario(client)
            else:
                async with AsyncClient(service.url, api_key="sk-test", retry=FAST, timeout=5) as client:
                    await scenario(client)

        asyncio.run(main())

    return runner
