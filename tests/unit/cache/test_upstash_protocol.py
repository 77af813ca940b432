"""Edge cases of the Upstash REST exchange that a well-behaved server does not produce on demand."""

from __future__ import annotations

import base64
import json

import httpx
import pytest
from pydantic import SecretStr

from novita_gpu.cache import CacheUnavailable, UpstashBackend

TOKEN = "tok-3b7a"


def backend_answering(answer: httpx.Response, seen: list[httpx.Request]) -> UpstashBackend:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer

    transport = httpx.MockTransport(handler)
    return UpstashBackend("https://db.upstash.io/", SecretStr(TOKEN), prefix="p:", transport=transport)


async def test_a_command_is_a_json_array_posted_to_the_base_url_with_the_token() -> None:
    seen: list[httpx.Request] = []
    backend = backend_answering(httpx.Response(200, json={"result": "OK"}), seen)

    await backend.set("products:a", b'{"id":1}', ttl=1.5)

    (request,) = seen
    assert (request.method, str(request.url)) == ("POST", "https://db.upstash.io/")
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert json.loads(request.content) == ["SET", "p:products:a", '{"id":1}', "PX", "1500"]
    await backend.aclose()


async def test_values_come_back_byte_for_byte_from_base64() -> None:
    value = '{"name":"RTX 4090 — 24GB"}'.encode()
    backend = backend_answering(httpx.Response(200, json={"result": base64.b64encode(value).decode()}), [])
    assert await backend.get("products:a") == value
    await backend.aclose()


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(400, json={"error": "ERR wrong number of arguments"}),
        httpx.Response(200, json={"error": "ERR something"}),
        httpx.Response(200, json={"result": "not base64!"}),
        httpx.Response(502, text="<html>bad gateway</html>"),
        httpx.Response(200, json=["unexpected"]),
    ],
)
async def test_a_bad_answer_is_cache_unavailable_without_the_token(answer: httpx.Response) -> None:
    backend = backend_answering(answer, [])
    with pytest.raises(CacheUnavailable) as failure:
        await backend.get("products:a")
    assert TOKEN not in str(failure.value)
    await backend.aclose()


async def test_values_must_be_utf8_text() -> None:
    backend = backend_answering(httpx.Response(200, json={"result": "OK"}), [])
    with pytest.raises(ValueError, match="UTF-8"):
        await backend.set("products:a", b"\xff\xfe", ttl=1)
    await backend.aclose()
