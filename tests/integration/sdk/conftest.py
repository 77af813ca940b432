from __future__ import annotations

from collections.abc import Iterator

import pytest

from novita_gpu_client import Client
from tests.fixtures.live_service import LiveService, module_live  # noqa: F401 (the module-wide `live` service)


@pytest.fixture(scope="module")
def client(live: LiveService) -> Iterator[Client]:
    """The sync client of the module's service."""
    with live.client() as sync_client:
        yield sync_client
