"""The core's two ways of running an operation: awaited (asyncio) or run to its end at once (blocking)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import pytest

from novita_gpu_client import calls
from novita_gpu_client.core import iter_blocking, run_blocking


async def never_suspends(value: int) -> int:
    return value * 2


async def suspends() -> int:
    await asyncio.sleep(0)  # a real await: only an event loop can resume it
    return 1


def test_a_coroutine_that_never_suspends_runs_to_its_answer_or_its_error() -> None:
    assert run_blocking(never_suspends(21)) == 42

    async def fails() -> None:
        raise ValueError("from inside")

    with pytest.raises(ValueError, match="from inside"):
        run_blocking(fails())


def test_one_that_suspends_is_refused_rather_than_left_half_run() -> None:
    with pytest.raises(RuntimeError, match="suspended"):
        run_blocking(suspends())


def test_leaving_a_blocking_iterator_early_closes_its_generator() -> None:
    closed: list[bool] = []

    async def numbers() -> AsyncGenerator[int, None]:
        try:
            for n in range(10):
                yield n
        finally:
            closed.append(True)  # where a stream is closed

    seen = []
    for n in iter_blocking(numbers()):
        seen.append(n)
        if n == 2:
            break
    assert seen == [0, 1, 2] and closed == [True]
    assert list(iter_blocking(numbers())) == list(range(10))


def test_each_request_is_described_once() -> None:
    create = calls.create("job-1", "RTX 4090 24GB", 7, {"gpu_num": 2, "envs": {"A": "1"}}, "key-1")
    assert (create.method, create.path, create.retryable) == ("POST", "/api/instances", True)
    assert create.headers == {"Idempotency-Key": "key-1"}
    assert create.body == {
        "name": "job-1",
        "productName": "RTX 4090 24GB",
        "templateId": 7,
        "gpuNum": 2,
        "envs": [{"key": "A", "value": "1"}],
    }
    assert calls.create("a", "b", "c", {}).headers["Idempotency-Key"].startswith("sdk-")  # a fresh key each time
    with pytest.raises(TypeError, match="unknown create option"):
        calls.create("a", "b", "c", {"gpus": 1})  # type: ignore[typeddict-unknown-key]
    assert calls.touch("x/../y").path == "/api/instances/x%2F..%2Fy/last-used"
    assert calls.wait("inst_1", {"ready", "failed"}, 12.5).request_options(30.0)["timeout"] == 42.5
    assert not calls.sync().retryable and not calls.autostop_trigger(dry_run=False).retryable
