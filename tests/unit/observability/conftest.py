"""Capture what the real logging set-up writes, and leave global logging as it was afterwards."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import structlog

from novita_gpu.observability.logging import configure_logging

LogReader = Callable[[], list[dict[str, Any]]]


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    """configure_logging(level=DEBUG, fmt=json) into a StringIO; restored after the test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    stream = io.StringIO()
    configure_logging("DEBUG", "json", stream)
    yield stream
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


@pytest.fixture
def read_logs(log_stream: io.StringIO) -> LogReader:
    """Every JSON line written so far, parsed."""

    def read() -> list[dict[str, Any]]:
        return [json.loads(line) for line in log_stream.getvalue().splitlines() if line.strip()]

    return read
