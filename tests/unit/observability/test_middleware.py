"""RequestContextMiddleware on a small FastAPI app, driven in-process over httpx's ASGI transport."""

from __future__ import annotations

import io
import re
from collections.abc import AsyncIterator, Iterator

import asyncpg
import httpx
import pytest
import structlog
from fastapi import FastAPI, Request, Response
from fastapi.responses import StreamingResponse
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel
from starlette.types import Receive, Scope, Send

from novita_gpu.kit.serving import BackgroundServer
from novita_gpu.observability.logging import register_secret
from novita_gpu.observability.metrics import Metrics
from novita_gpu.web.errors import ApiError, install_error_handlers
from novita_gpu.web.middleware import RequestContextMiddleware

from .conftest import LogReader

LIMIT = 1024
HEX_ID = re.compile(r"[0-9a-f]{32}")
BOOM_SECRET = "boom-secret-5c2e1f0a9d"


class Item(BaseModel):
    name: str


def build_app(metrics: Metrics) -> tuple[FastAPI, list[str]]:
    app = FastAPI()
    install_error_handlers(app)
    handled: list[str] = []

    @app.get("/api/instances/{instance_id}")
    async def get_instance(instance_id: str, request: Request) -> dict[str, str]:
        if instance_id == "gone":
            raise ApiError(404, "INSTANCE_NOT_FOUND", "No such instance.")
        return {"instanceId": instance_id, "seenRequestId": request.state.request_id}

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        handled.append("echo")
        return {"size": len(await request.body())}

    @app.post("/items")
    async def items(item: Item) -> dict[str, str]:
        handled.append("items")
        return {"name": item.name}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError(f"exploded while holding {BOOM_SECRET}")

    @app.get("/store-full")
    async def store_full() -> None:
        raise asyncpg.exceptions.TooManyConnectionsError("sorry, too many clients already")

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "healthy"}

    @app.get("/metrics")
    async def prometheus() -> Response:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    app.add_middleware(RequestContextMiddleware, metrics=metrics, max_body_bytes=LIMIT)
    return app, handled


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def handled(app_and_handled: tuple[FastAPI, list[str]]) -> list[str]:
    return app_and_handled[1]


@pytest.fixture
def app_and_handled(metrics: Metrics) -> tuple[FastAPI, list[str]]:
    return build_app(metrics)


@pytest.fixture
async def client(
    app_and_handled: tuple[FastAPI, list[str]], log_stream: io.StringIO
) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app_and_handled[0], raise_app_exceptions=True)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


def _ids(response: httpx.Response) -> tuple[str, str]:
    return response.headers["x-request-id"], response.headers["x-correlation-id"]


async def test_ids_are_generated_when_absent(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/instances/abc")

    request_id, correlation_id = _ids(response)
    assert HEX_ID.fullmatch(request_id)
    assert correlation_id == request_id
    assert response.json()["seenRequestId"] == request_id


async def test_ids_sent_by_the_client_are_echoed(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/api/instances/abc", headers={"X-Request-ID": "req-1.a:b_c", "X-Correlation-ID": "flow-42"}
    )

    assert _ids(response) == ("req-1.a:b_c", "flow-42")
    assert response.json()["seenRequestId"] == "req-1.a:b_c"


@pytest.mark.parametrize("bad", ["has space", "<script>", "x" * 129, "semi;colon"])
async def test_unsafe_ids_are_replaced(client: httpx.AsyncClient, bad: str) -> None:
    response = await client.get("/health", headers={"X-Request-ID": bad, "X-Correlation-ID": bad})

    request_id, correlation_id = _ids(response)
    assert HEX_ID.fullmatch(request_id)
    assert HEX_ID.fullmatch(correlation_id)
    assert bad not in response.headers.values()


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/no/such/route", 404, "NOT_FOUND"),
        ("GET", "/api/instances/gone", 404, "INSTANCE_NOT_FOUND"),
        ("POST", "/items", 400, "VALIDATION_ERROR"),
        ("GET", "/boom", 500, "INTERNAL_ERROR"),
    ],
)
async def test_errors_carry_both_ids_in_headers_and_envelope(
    client: httpx.AsyncClient, method: str, path: str, status: int, code: str
) -> None:
    response = await client.request(method, path, json={}, headers={"X-Correlation-ID": "flow-7"})

    assert response.status_code == status
    request_id, correlation_id = _ids(response)
    assert correlation_id == "flow-7"
    error = response.json()["error"]
    assert (error["code"], error["requestId"]) == (code, request_id)


async def test_a_crash_answers_500_without_internals_and_logs_it_with_the_ids_but_no_secret(
    client: httpx.AsyncClient, read_logs: LogReader
) -> None:
    register_secret(BOOM_SECRET)

    response = await client.get("/boom", headers={"X-Request-ID": "crash-1"})

    assert response.status_code == 500
    assert response.json() == {
        "error": {"code": "INTERNAL_ERROR", "message": "An unexpected error occurred.", "requestId": "crash-1"}
    }
    crash = next(line for line in read_logs() if line["event"] == "unhandled_error")
    assert crash["request_id"] == "crash-1"
    assert "RuntimeError: exploded while holding [REDACTED]" in crash["exception"]
    assert BOOM_SECRET not in str(read_logs())


async def test_a_database_out_of_connections_answers_503_with_retry_after_not_500(
    client: httpx.AsyncClient, read_logs: LogReader
) -> None:
    response = await client.get("/store-full", headers={"X-Request-ID": "full-1"})

    assert response.status_code == 503 and response.headers["retry-after"] == "2"
    assert response.json()["error"] == {
        "code": "STORE_UNAVAILABLE",
        "message": "The database is not accepting work right now; retry shortly.",
        "requestId": "full-1",
    }
    assert [line["error_type"] for line in read_logs() if line["event"] == "store_unavailable"] == [
        "TooManyConnectionsError"
    ]


async def streamed(chunks: int, chunk: bytes, pulled: list[int] | None = None) -> AsyncIterator[bytes]:
    """A request body sent in `chunks` pieces; `pulled` records each piece's index as it is read."""
    for i in range(chunks):
        if pulled is not None:
            pulled.append(i)
        yield chunk


async def test_a_body_over_the_limit_by_content_length_is_refused_unread(
    client: httpx.AsyncClient, handled: list[str]
) -> None:
    pulled: list[int] = []
    response = await client.post(
        "/echo",
        content=streamed(8, b"x" * 512, pulled),
        headers={"Content-Length": str(8 * 512), "X-Request-ID": "big-1"},
    )

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert response.json()["error"]["requestId"] == "big-1"
    assert _ids(response) == ("big-1", "big-1")
    assert handled == []
    assert pulled == []


@pytest.mark.parametrize("path", ["/echo", "/items"])
async def test_a_chunked_body_is_cut_off_once_it_passes_the_limit(
    client: httpx.AsyncClient, handled: list[str], path: str
) -> None:
    pulled: list[int] = []
    response = await client.post(
        path, content=streamed(100, b"y" * 300, pulled), headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 413
    error = response.json()["error"]
    assert error["code"] == "PAYLOAD_TOO_LARGE"
    assert error["requestId"] == response.headers["x-request-id"]
    assert len(pulled) == 4  # 4 x 300 bytes is the first total over 1024
    assert handled == ([] if path == "/items" else ["echo"])


async def test_a_chunked_body_within_the_limit_passes(client: httpx.AsyncClient) -> None:
    response = await client.post("/echo", content=streamed(3, b"z" * 300))

    assert response.status_code == 200
    assert response.json() == {"size": 900}


async def test_requests_are_counted_per_route_template(client: httpx.AsyncClient, metrics: Metrics) -> None:
    await client.get("/api/instances/first-id")
    await client.get("/api/instances/second-id")
    await client.get("/api/instances/gone")
    await client.get("/definitely/not/here")

    by_route = metrics.summary()["requests"]["byRoute"]
    assert set(by_route) == {"/api/instances/{instance_id}", "unmatched"}
    assert by_route["/api/instances/{instance_id}"]["count"] == 3
    assert by_route["unmatched"]["count"] == 1

    text = (await client.get("/metrics")).text
    assert "first-id" not in text
    assert "/definitely/not/here" not in text
    families = {family.name: family for family in text_string_to_metric_families(text)}
    series = {
        (s.labels["method"], s.labels["route"], s.labels["status"]): s.value
        for s in families["http_requests"].samples
        if s.name == "http_requests_total"
    }
    assert series == {
        ("GET", "/api/instances/{instance_id}", "200"): 2,
        ("GET", "/api/instances/{instance_id}", "404"): 1,
        ("GET", "unmatched", "404"): 1,
    }
    durations = {
        s.labels["route"]: s.value
        for s in families["http_request_duration_seconds"].samples
        if s.name == "http_request_duration_seconds_count"
    }
    assert durations == {"/api/instances/{instance_id}": 3, "unmatched": 1}


async def test_one_access_log_line_per_request_without_headers_or_query(
    client: httpx.AsyncClient, read_logs: LogReader
) -> None:
    await client.get(
        "/api/instances/abc?token=query-secret-123",
        headers={"Authorization": "Bearer header-secret-456", "X-Correlation-ID": "flow-1"},
    )

    (line,) = [line for line in read_logs() if line["event"] == "request"]
    assert line["level"] == "info"
    assert line["method"] == "GET"
    assert line["route"] == "/api/instances/{instance_id}"
    assert line["path"] == "/api/instances/abc"
    assert line["status"] == 200
    assert line["duration_ms"] >= 0
    assert HEX_ID.fullmatch(line["request_id"])
    assert line["correlation_id"] == "flow-1"
    raw = str(read_logs())
    assert "query-secret-123" not in raw
    assert "header-secret-456" not in raw


async def test_health_and_metrics_are_logged_at_debug_only(client: httpx.AsyncClient, read_logs: LogReader) -> None:
    await client.get("/health")
    await client.get("/metrics")
    await client.get("/api/instances/x")

    levels = {line["path"]: line["level"] for line in read_logs() if line["event"] == "request"}
    assert levels == {"/health": "debug", "/metrics": "debug", "/api/instances/x": "info"}


async def test_mounted_apps_report_their_full_route_template(metrics: Metrics, log_stream: io.StringIO) -> None:
    inner = FastAPI()

    @inner.get("/v1/gpu/instance/{instance_id}")
    async def instance(instance_id: str) -> dict[str, str]:
        return {"id": instance_id}

    async def plain_asgi(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"body {}"})

    outer = FastAPI()
    outer.mount("/emulator", inner)
    outer.mount("/static", plain_asgi)
    app = RequestContextMiddleware(outer, metrics=metrics, max_body_bytes=LIMIT)

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        assert (await c.get("/emulator/v1/gpu/instance/i-1")).status_code == 200
        assert (await c.get("/emulator/elsewhere")).status_code == 404
        assert (await c.get("/static/css/site.css")).status_code == 200
        assert (await c.get("/nowhere")).status_code == 404

    assert set(metrics.summary()["requests"]["byRoute"]) == {
        "/emulator/v1/gpu/instance/{instance_id}",
        "/emulator/{path}",
        "/static/{path}",
        "unmatched",
    }


@pytest.fixture(autouse=True)
def _no_leaked_context() -> Iterator[None]:
    yield
    assert structlog.contextvars.get_contextvars() == {}


async def test_over_real_http_the_client_reads_the_413_and_the_connection_stays_usable(
    app_and_handled: tuple[FastAPI, list[str]], log_stream: io.StringIO
) -> None:
    server = BackgroundServer(app_and_handled[0])
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=5) as c:

            async def chunks() -> AsyncIterator[bytes]:
                for _ in range(200):
                    yield b"c" * 10_000

            by_length = await c.post("/echo", content=b"x" * 2_000_000)
            by_stream = await c.post("/echo", content=chunks())
            after = await c.get("/api/instances/still-up")
    finally:
        await server.stop()

    for response in (by_length, by_stream):
        assert response.status_code == 413
        assert response.json()["error"]["requestId"] == response.headers["x-request-id"]
    assert after.status_code == 200
    assert app_and_handled[1] == ["echo"]  # only the chunked one reached the endpoint


async def test_a_crash_mid_stream_is_logged_and_still_counted(
    metrics: Metrics, log_stream: io.StringIO, read_logs: LogReader
) -> None:
    app = FastAPI()

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def parts() -> AsyncIterator[bytes]:
            yield b"first part"
            raise RuntimeError("lost the upstream")

        return StreamingResponse(parts())

    app.add_middleware(RequestContextMiddleware, metrics=metrics, max_body_bytes=LIMIT)

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        with pytest.raises(RuntimeError):
            await c.get("/stream", headers={"X-Request-ID": "mid-1"})

    crash = next(line for line in read_logs() if line["event"] == "unhandled_error_after_response_started")
    assert crash["request_id"] == "mid-1"
    access = next(line for line in read_logs() if line["event"] == "request")
    assert (access["route"], access["status"], access["request_id"]) == ("/stream", 200, "mid-1")
    assert metrics.summary()["requests"]["byRoute"]["/stream"]["count"] == 1
