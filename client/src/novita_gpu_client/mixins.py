"""What the method mixins of `Client` and `AsyncClient` stand on (volumes.py, teams.py): a call sent as the
client sends it, its answer given at once (blocking) or to be awaited, and pages walked the same way."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Coroutine
from typing import Any, Generic, TypeVar

from novita_gpu_client import core
from novita_gpu_client.calls import Call, Json
from novita_gpu_client.config import ClientConfig

Answer = TypeVar("Answer")  # Json, or an awaitable of it
Items = TypeVar("Items")  # an iterator of Json, or an async one


class CallMethods(ABC, Generic[Answer, Items]):
    _config: ClientConfig
    _transport: core.Transport

    @abstractmethod
    def _answer(self, work: Coroutine[Any, Any, Json]) -> Answer: ...

    @abstractmethod
    def _instances(self, items: AsyncGenerator[Json, None]) -> Items: ...

    def _send(self, call: Call) -> Answer:
        return self._answer(core.send(self._transport, self._config, call))
