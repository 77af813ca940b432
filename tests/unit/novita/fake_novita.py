"""A scripted HTTP peer on loopback for the client's edge cases.

Each route answers from its script: a fixed reply, replies in order, or a function of the request.
Besides ordinary answers a reply can be DISCONNECT (the connection closes with no answer: the request
was sent) or HANG (no answer until the client gives up). Every connection carries one request and is
then closed, so no client ever retries on a reused connection behind the test's back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from novita_gpu.kit.serving import free_port


@dataclass(frozen=True)
class Reply:
    status: int = 200
    json: Any = None
    text: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)

    def encode(self) -> bytes:
        if self.text is not None:
            body, kind = self.text.encode(), "text/html; charset=utf-8"
        elif self.json is not None:
            body, kind = json.dumps(self.json).encode(), "application/json"
        else:
            body, kind = b"", None
        head = [f"HTTP/1.1 {self.status} Scripted", f"Content-Length: {len(body)}", "Connection: close"]
        if kind is not None:
            head.append(f"Content-Type: {kind}")
        head += [f"{name}: {value}" for name, value in self.headers.items()]
        return ("\r\n".join(head) + "\r\n\r\n").encode() + body


DISCONNECT = Reply(status=-1)
HANG = Reply(status=-2)


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


Script = Reply | list[Reply] | Callable[[Call], Reply]


@dataclass
class Route:
    method: str
    path: str
    params: Mapping[str, str]
    script: Script
    calls: list[Call] = field(default_factory=list)

    def matches(self, call: Call) -> bool:
        wanted = {key: str(value) for key, value in self.params.items()}
        return call.method == self.method and call.path == self.path and wanted.items() <= call.params.items()

    def reply(self, call: Call) -> Reply:
        self.calls.append(call)
        if isinstance(self.script, Reply):
            return self.script
        if isinstance(self.script, list):
            return self.script.pop(0)
        return self.script(call)


class FakeNovita:
    """Listens on `port` (a free one by default) once started; `url` is the API root to give the client."""

    def __init__(self, port: int | None = None, prefix: str = "/gpu-instance/openapi/v1") -> None:
        self.port = port or free_port()
        self.prefix = prefix
        self.routes: list[Route] = []
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[Any]] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.prefix.removesuffix('/v1')}"

    def route(self, method: str, path: str, script: Script, **params: str) -> Route:
        route = Route(method, self.prefix + path, params, script)
        self.routes.insert(0, route)  # the latest route that matches a request wins
        return route

    async def start(self) -> FakeNovita:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        return self

    async def stop(self) -> None:
        for handler in list(self._handlers):  # a HANG would otherwise outlive the test
            handler.cancel()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handler = asyncio.current_task()
        if handler is not None:
            self._handlers.add(handler)
        try:
            call = await _read_call(reader)
            route = next((r for r in self.routes if r.matches(call)), None)
            reply = route.reply(call) if route else Reply(404, json={"code": 404, "reason": "NO_ROUTE"})
            if reply is HANG:
                await asyncio.sleep(3600)
            if reply is not DISCONNECT:
                writer.write(reply.encode())
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            if handler is not None:
                self._handlers.discard(handler)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def _read_call(reader: asyncio.StreamReader) -> Call:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    request_line, *header_lines = head.split("\r\n")
    method, target, _ = request_line.split(" ", 2)
    headers = {}
    for line in header_lines:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    url = urlsplit(target)
    return Call(method, url.path, dict(parse_qsl(url.query)), headers, body)
