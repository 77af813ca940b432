"""The image prewarm calls against a scripted Novita: what is sent, Novita's loose types read, an answer
without an id refused, and the create sent once."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from novita_gpu.novita import NovitaClient, PrewarmTask, UpstreamUnavailable
from tests.fixtures.novita_client import Sleeps
from tests.unit.novita.fake_novita import FakeNovita, Reply

KEY = "sk_live_0123456789abcdef_SECRET"


@pytest.fixture
async def client(novita: FakeNovita, sleeps: Sleeps) -> AsyncIterator[NovitaClient]:
    async with NovitaClient(novita.url, KEY, timeout=0.5, max_attempts=3, sleep=sleeps) as c:
        yield c


async def test_create_sends_the_documented_body_and_returns_the_id(novita: FakeNovita, client: NovitaClient) -> None:
    route = novita.route("POST", "/image/prewarm", Reply(json={"id": "t1"}))
    assert await client.create_prewarm_task("a/b:1", "3", product_ids=["p1"], repository_auth="r1", note="n") == "t1"
    assert await client.create_prewarm_task("a/b:1", "3") == "t1"
    assert [c.json() for c in route.calls] == [
        {"imageUrl": "a/b:1", "clusterId": "3", "repositoryAuth": "r1", "productIds": ["p1"], "note": "n"},
        {"imageUrl": "a/b:1", "clusterId": "3"},
    ]


@pytest.mark.parametrize("answer", [{}, {"id": ""}, None, {"id": True}])
async def test_a_create_answered_without_an_id_is_refused(
    novita: FakeNovita, client: NovitaClient, answer: object
) -> None:
    novita.route("POST", "/image/prewarm", Reply(json=answer))
    with pytest.raises(UpstreamUnavailable) as error:
        await client.create_prewarm_task("a/b:1", "3")
    assert error.value.reason == "INVALID_RESPONSE"


async def test_a_create_that_may_have_arrived_is_not_sent_again(
    novita: FakeNovita, client: NovitaClient, sleeps: Sleeps
) -> None:
    route = novita.route("POST", "/image/prewarm", Reply(500, json={"code": 500, "reason": "UNKNOWN"}))
    with pytest.raises(UpstreamUnavailable):
        await client.create_prewarm_task("a/b:1", "3")
    assert len(route.calls) == 1 and sleeps == []


async def test_list_sends_novita_query_names_and_reads_loose_types(novita: FakeNovita, client: NovitaClient) -> None:
    item = {
        "id": "t1",
        "imageUrl": "a/b:1",
        "clusterId": 3,
        "products": None,
        "imageSize": "1073741824",
        "createTime": "1711995567",
        "state": "Failed",
        "completeTime": "0",
        "reason": ["no nodes available"],
    }
    route = novita.route("GET", "/image/prewarm", Reply(json={"data": [item], "total": "1"}))
    page = await client.list_prewarm_tasks(cluster_id="3", state="Failed", page_size=10)
    assert route.calls[0].params == {"page": "1", "pageSize": "10", "clusterId": "3", "state": "Failed"}
    [task] = page.tasks
    assert isinstance(task, PrewarmTask) and page.total == 1
    assert (task.cluster_id, task.image_size, task.products, task.complete_time) == ("3", 1024**3, [], None)
    assert task.create_time is not None and int(task.create_time.timestamp()) == 1711995567
    assert task.finished and not task.succeeded and task.reason == ["no nodes available"]


async def test_delete_sends_the_ids_and_is_retried(novita: FakeNovita, client: NovitaClient, sleeps: Sleeps) -> None:
    route = novita.route("POST", "/image/prewarm/delete", [Reply(503), Reply(json={})])
    await client.delete_prewarm_tasks(["t1", "t2"])
    assert [c.json() for c in route.calls] == [{"ids": ["t1", "t2"]}] * 2 and len(sleeps) == 1
