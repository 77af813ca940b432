"""The webhook sender against a real receiver on loopback, and the dial-time SSRF guard.

The receiver is a tiny Starlette app on a free port. The guard is exercised through real
connections: with loopback forbidden, a host name that resolves to 127.0.0.1 (DNS rebinding) is
refused at dial time and the receiver never sees a request.
"""

from __future__ import annotations

import asyncio
import ipaddress
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from novita_gpu.kit.serving import BackgroundServer
from novita_gpu.webhooks.guard import (
    GuardedResolver,
    IPAddress,
    Resolver,
    UnsafeWebhookTarget,
    WebhookPolicy,
    validate_webhook_url,
)
from novita_gpu.webhooks.sender import SendResult, WebhookSender
from novita_gpu.webhooks.signing import signature_headers, verify

TIMEOUT = 2.0
LOOPBACK_OK = WebhookPolicy(allow_loopback=True)
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
BODY = b'{"event":"instance.ready","instanceId":"i-1","status":"running","data":{}}'


@dataclass
class Receiver:
    url: str
    hits: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)

    def paths(self) -> list[str]:
        return [path for path, _, _ in self.hits]


def receiver_app(receiver: Receiver, release: asyncio.Event) -> Starlette:
    async def record(request: Request) -> None:
        receiver.hits.append((request.url.path, dict(request.headers), await request.body()))

    async def ok(request: Request) -> Response:
        await record(request)
        return Response("thanks")

    async def fail(request: Request) -> Response:
        await record(request)
        return Response("boom", status_code=500)

    async def gone(request: Request) -> Response:
        await record(request)
        return Response(status_code=410)

    async def busy(request: Request) -> Response:
        await record(request)
        return Response(status_code=429, headers={"Retry-After": "7"})

    async def redirect(request: Request) -> Response:
        await record(request)
        return RedirectResponse("/target", status_code=307)

    async def huge(request: Request) -> Response:
        await record(request)

        async def endless() -> AsyncIterator[bytes]:
            chunk = b"x" * 65536
            while not release.is_set():
                yield chunk

        return StreamingResponse(endless())

    async def slow(request: Request) -> Response:
        await record(request)
        await release.wait()
        return Response("late")

    return Starlette(
        routes=[
            Route("/ok", ok, methods=["POST"]),
            Route("/target", ok, methods=["POST", "GET"]),
            Route("/fail", fail, methods=["POST"]),
            Route("/gone", gone, methods=["POST"]),
            Route("/busy", busy, methods=["POST"]),
            Route("/redirect", redirect, methods=["POST"]),
            Route("/huge", huge, methods=["POST"]),
            Route("/slow", slow, methods=["POST"]),
        ]
    )


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    release = asyncio.Event()
    holder = Receiver(url="")
    server = BackgroundServer(receiver_app(holder, release))
    await server.start()
    holder.url = server.url
    try:
        yield holder
    finally:
        release.set()
        await server.stop()


def resolving_to(*addresses: str) -> Resolver:
    async def resolve(host: str, port: int) -> Sequence[IPAddress]:
        return [ipaddress.ip_address(address) for address in addresses]

    return resolve


async def post(
    url: str, policy: WebhookPolicy = LOOPBACK_OK, *, timeout: float = TIMEOUT, resolver: Resolver | None = None
) -> SendResult:
    async with WebhookSender(policy, timeout, resolver=resolver) as sender:
        headers = signature_headers([SECRET], "msg_1", 1_700_000_000, BODY)
        return await sender.send(url, BODY, headers)


async def test_2xx_is_ok_and_the_receiver_gets_the_signed_body(receiver: Receiver) -> None:
    result = await post(receiver.url + "/ok")
    assert (result.ok, result.status_code, result.error, result.gone) == (True, 200, None, False)
    assert 0 < result.duration < 2
    [(_, headers, body)] = receiver.hits
    assert body == BODY
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"].startswith("novita-gpu-webhooks/")
    assert verify(SECRET, headers, body, now=1_700_000_000)


async def test_5xx_is_a_failure(receiver: Receiver) -> None:
    result = await post(receiver.url + "/fail")
    assert (result.ok, result.status_code, result.error, result.gone) == (False, 500, "HTTP 500", False)


async def test_410_means_gone(receiver: Receiver) -> None:
    result = await post(receiver.url + "/gone")
    assert (result.ok, result.status_code, result.gone) == (False, 410, True)


async def test_429_reports_retry_after(receiver: Receiver) -> None:
    result = await post(receiver.url + "/busy")
    assert (result.ok, result.status_code, result.retry_after) == (False, 429, 7.0)


async def test_redirects_are_never_followed(receiver: Receiver) -> None:
    result = await post(receiver.url + "/redirect")
    assert (result.ok, result.status_code) == (False, 307)
    assert result.error is not None and "redirect" in result.error
    assert receiver.paths() == ["/redirect"]


async def test_an_endless_response_is_cut_short(receiver: Receiver) -> None:
    result = await post(receiver.url + "/huge", timeout=5.0)
    assert (result.ok, result.status_code) == (True, 200)
    assert result.duration < 2  # the overall bound would be 20 s


async def test_a_slow_receiver_times_out_quickly(receiver: Receiver) -> None:
    result = await post(receiver.url + "/slow", timeout=0.2)
    assert (result.ok, result.status_code, result.error) == (False, None, "timed out")
    assert result.duration < 1.5
    assert receiver.paths() == ["/slow"]


async def test_nothing_listening_is_a_connect_failure() -> None:
    from novita_gpu.kit.serving import free_port

    result = await post(f"http://127.0.0.1:{free_port()}/ok")
    assert (result.ok, result.status_code, result.error) == (False, None, "could not connect")


async def test_loopback_literal_is_refused_at_dial_time(receiver: Receiver) -> None:
    result = await post(receiver.url + "/ok", WebhookPolicy())
    assert not result.ok and result.status_code is None
    assert result.error is not None and "127.0.0.1 is a loopback address" in result.error
    assert receiver.hits == []


@pytest.mark.parametrize("spelling", ["localhost", "2130706433", "127.1"])
async def test_loopback_spellings_are_refused_at_dial_time(receiver: Receiver, spelling: str) -> None:
    url = receiver.url.replace("127.0.0.1", spelling) + "/ok"
    result = await post(url, WebhookPolicy())
    assert result.error is not None
    assert f"refused to connect to {spelling}: 127.0.0.1 is a loopback address" in result.error
    assert receiver.hits == []


async def test_dns_rebinding_to_loopback_is_refused(receiver: Receiver) -> None:
    url = receiver.url.replace("127.0.0.1", "hooks.example.com") + "/ok"
    assert validate_webhook_url(url, WebhookPolicy()) == url  # a public-looking name passes creation
    result = await post(url, WebhookPolicy(), resolver=resolving_to("127.0.0.1"))
    assert result.error is not None
    assert "refused to connect to hooks.example.com: 127.0.0.1 is a loopback address" in result.error
    assert receiver.hits == []


async def test_any_forbidden_answer_refuses_the_host(receiver: Receiver) -> None:
    url = receiver.url.replace("127.0.0.1", "hooks.example.com") + "/ok"
    resolver = resolving_to("93.184.215.14", "::ffff:169.254.169.254")
    result = await post(url, WebhookPolicy(), resolver=resolver)
    assert result.error is not None and "169.254.169.254" in result.error
    assert receiver.hits == []


async def test_allowed_networks_do_not_open_loopback(receiver: Receiver) -> None:
    policy = WebhookPolicy(allow_networks=(ipaddress.ip_network("127.0.0.0/8"),))
    result = await post(receiver.url + "/ok", policy)
    assert result.error is not None and "loopback" in result.error
    assert receiver.hits == []


async def test_connection_goes_to_the_checked_ip_with_the_original_host_header(receiver: Receiver) -> None:
    url = receiver.url.replace("127.0.0.1", "hooks.example.com") + "/ok"
    result = await post(url, LOOPBACK_OK, resolver=resolving_to("127.0.0.1"))
    assert result.ok
    [(_, headers, _)] = receiver.hits
    assert headers["host"] == f"hooks.example.com:{url.split(':')[2].split('/')[0]}"


async def test_allowed_hosts_skip_the_dial_check(receiver: Receiver) -> None:
    url = receiver.url.replace("127.0.0.1", "localhost") + "/ok"
    result = await post(url, WebhookPolicy(allow_hosts=frozenset({"LocalHost"})))
    assert result.ok
    assert receiver.paths() == ["/ok"]


async def test_the_guard_exception_is_raised_by_a_plain_session_too(receiver: Receiver) -> None:
    connector = aiohttp.TCPConnector(resolver=GuardedResolver(WebhookPolicy()))
    async with aiohttp.ClientSession(connector=connector) as session:
        with pytest.raises(UnsafeWebhookTarget):
            await session.get(receiver.url.replace("127.0.0.1", "localhost") + "/target")
    assert receiver.hits == []


# TLS: we connect to the checked IP, yet SNI and certificate verification use the host name.


@dataclass
class TlsReceiver:
    port: int
    server_names: list[str | None]
    ca: ssl.SSLContext


@pytest.fixture
async def tls_receiver(tmp_path: Path) -> AsyncIterator[TlsReceiver]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=hooks.example.com",
         "-addext", "subjectAltName=DNS:hooks.example.com"],
        check=True, capture_output=True,
    )  # fmt: skip
    server_names: list[str | None] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.sni_callback = lambda _sock, name, _ctx: server_names.append(name)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    try:
        yield TlsReceiver(port, server_names, ssl.create_default_context(cafile=str(cert)))
    finally:
        server.close()
        await server.wait_closed()


async def send_tls(tls: TlsReceiver, host: str) -> SendResult:
    async with WebhookSender(LOOPBACK_OK, TIMEOUT, resolver=resolving_to("127.0.0.1"), ssl_context=tls.ca) as sender:
        return await sender.send(f"https://{host}:{tls.port}/hook", BODY, {})


async def test_tls_uses_the_host_name_for_sni_and_verification(tls_receiver: TlsReceiver) -> None:
    result = await send_tls(tls_receiver, "hooks.example.com")
    assert (result.ok, result.status_code) == (True, 204)
    assert tls_receiver.server_names == ["hooks.example.com"]


async def test_tls_refuses_a_certificate_for_another_name(tls_receiver: TlsReceiver) -> None:
    result = await send_tls(tls_receiver, "other.example.com")
    assert (result.ok, result.status_code, result.error) == (False, None, "TLS certificate verification failed")
    assert tls_receiver.server_names == ["other.example.com"]


async def test_a_name_that_does_not_resolve_says_so() -> None:
    async def nowhere(host: str, port: int) -> Sequence[IPAddress]:
        raise OSError("Name or service not known")

    result = await post("https://hooks.example.com/hook", WebhookPolicy(), resolver=nowhere)
    assert (result.ok, result.status_code, result.error) == (False, None, "could not resolve the host name")
