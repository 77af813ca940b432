from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.unit.novita.fake_novita import FakeNovita


@pytest.fixture
async def novita() -> AsyncIterator[FakeNovita]:
    """A scripted Novita on loopback (its `routes` say what it answers)."""
    fake = await FakeNovita().start()
    yield fake
    await fake.stop()
