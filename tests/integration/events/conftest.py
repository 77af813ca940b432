from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.fixtures.live_service import LiveService, live_service


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[LiveService]:
    """The harness's service on a loopback port, a fresh one for each test."""
    async with live_service(tmp_path) as service:
        yield service
