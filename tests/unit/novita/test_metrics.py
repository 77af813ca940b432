"""The monitoring call: its own base URL (under /openapi/v1), Novita's parameters, tolerant parsing, and
the client's retries and rate-limit memory shared with every other call."""

from __future__ import annotations

from typing import Any

import pytest

from novita_gpu.novita import InstanceMetrics, NovitaClient, UpstreamUnavailable
from novita_gpu.novita.transport import metrics_root
from tests.fixtures.novita_client import Sleeps
from tests.unit.novita.fake_novita import FakeNovita, Reply, Route, Script

KEY = "sk_metrics_key_0123456789"
PATH = "/openapi/v1/metrics/gpu/instance"


def metrics_route(novita: FakeNovita, script: Script) -> Route:
    route = Route("GET", PATH, {}, script)
    novita.routes.insert(0, route)
    return route


def series(*pairs: tuple[Any, Any]) -> list[dict[str, Any]]:
    return [{"timestamp": t, "value": v} for t, v in pairs]


DOCUMENTED = {
    "cpuUtilization": series((1700000000, 12.5)),
    "memUtilization": series((1700000000, 40)),
    "rootDiskUtilization": series((1700000000, 3)),
    "gpuUtilization": {
        "avg": series((1700000015, 80), (1700000000, 70)),
        "gpuIds": [{"gpuId": "0", "items": series((1700000000, 70))}, {"gpuId": 1, "items": []}],
    },
    "gpuMemUtilization": {"avg": series((1700000000, 50)), "gpuIds": []},
}


@pytest.mark.parametrize(
    ("api_root", "expected"),
    [
        ("https://api.novita.ai/gpu-instance/openapi/v1", "https://api.novita.ai/openapi/v1"),
        ("http://127.0.0.1:4000/gpu-instance/openapi/v1", "http://127.0.0.1:4000/openapi/v1"),
        ("https://proxy.example/novita/v1", "https://proxy.example/novita/v1"),
    ],
)
def test_the_metrics_root_is_beside_the_gpu_instance_api(api_root: str, expected: str) -> None:
    assert metrics_root(api_root) == expected


async def test_sends_novitas_parameters_to_its_own_path_and_parses_the_documented_answer(novita: FakeNovita) -> None:
    route = metrics_route(novita, Reply(json=DOCUMENTED))
    async with NovitaClient(novita.url, KEY) as client:
        got = await client.get_instance_metrics("abc", start=1699999900.7, end=1700000100, interval=30)
    [call] = route.calls
    assert call.params == {"instanceId": "abc", "startTime": "1699999900", "endTime": "1700000100", "interval": "30"}
    assert call.headers["authorization"] == f"Bearer {KEY}"
    assert [(p.timestamp, p.value) for p in got.gpu_utilization.avg] == [(1700000000, 70), (1700000015, 80)]
    assert [g.gpu_id for g in got.gpu_utilization.gpu_ids] == ["0", "1"]
    assert got.cpu_utilization[0].value == 12.5 and got.gpu_mem_utilization.avg[0].value == 50


def _get(body: Any) -> InstanceMetrics:
    return InstanceMetrics.model_validate(body)


def test_odd_samples_are_dropped_one_by_one_and_odd_shapes_read_as_no_data() -> None:
    odd = _get(
        {
            "gpuUtilization": {
                "avg": [
                    {"timestamp": "1700000000", "value": "7.5"},  # strings
                    {"timestamp": 1700000015000, "value": 9},  # milliseconds
                    {"timestamp": 1700000030, "value": None},
                    {"timestamp": 1700000045, "value": "NaN"},
                    {"timestamp": None, "value": 3},
                    {"value": 3},
                    "junk",
                    {"timestamp": True, "value": 1},
                ],
                "gpuIds": None,
            },
            "cpuUtilization": {},
            "memUtilization": "",
            "someFutureField": [1, 2],
        }
    )
    assert [(p.timestamp, p.value) for p in odd.gpu_utilization.avg] == [(1700000000, 7.5), (1700000015, 9)]
    assert odd.cpu_utilization == [] and odd.mem_utilization == [] and odd.gpu_utilization.gpu_ids == []
    assert _get({"gpuUtilization": series((1700000000, 5))}).gpu_utilization.avg[0].value == 5  # a bare list
    nothing: dict[str, Any]
    for nothing in ({}, {"gpuUtilization": None}, {"gpuUtilization": "n/a"}, {"gpuUtilization": {"avg": {}}}):
        assert _get(nothing).gpu_utilization.avg == []


async def test_an_empty_body_or_a_data_wrapper_is_accepted(novita: FakeNovita) -> None:
    metrics_route(novita, [Reply(), Reply(json={"data": DOCUMENTED})])
    async with NovitaClient(novita.url, KEY) as client:
        assert (await client.get_instance_metrics("abc")).gpu_utilization.avg == []
        assert len((await client.get_instance_metrics("abc")).gpu_utilization.avg) == 2


async def test_retried_like_any_read_and_a_429_is_remembered_for_every_caller(novita: FakeNovita) -> None:
    limited = Reply(
        429, json={"code": 429, "reason": "RATE_LIMIT_EXCEEDED", "message": "slow"}, headers={"Retry-After": "7"}
    )
    metrics_route(
        novita, [limited, Reply(503, json={"code": 503, "reason": "SERVICE_UNAVAILABLE"}), Reply(json=DOCUMENTED)]
    )
    sleeps = Sleeps()
    observed: list[tuple[str, str]] = []
    async with NovitaClient(novita.url, KEY, sleep=sleeps, observer=lambda e, o, s: observed.append((e, o))) as client:
        assert client.rate_limit_wait() == 0
        got = await client.get_instance_metrics("abc")
        assert len(got.gpu_utilization.avg) == 2
        assert sleeps[0] == 7  # Retry-After honoured
        assert 6 < client.rate_limit_wait() <= 7  # and remembered: the poller waits it out
    assert observed == [("metrics.gpu", "rate_limited"), ("metrics.gpu", "server_error"), ("metrics.gpu", "ok")]


async def test_a_body_that_is_not_an_object_is_an_invalid_response(novita: FakeNovita) -> None:
    metrics_route(novita, lambda call: Reply(json=[1, 2, 3]))
    async with NovitaClient(novita.url, KEY, max_attempts=1) as client:
        with pytest.raises(UpstreamUnavailable) as raised:
            await client.get_instance_metrics("abc")
    assert raised.value.reason == "INVALID_RESPONSE"
