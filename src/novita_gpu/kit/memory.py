"""Handing memory the process freed back to the system.

glibc keeps what Python frees in its heap for reuse, and gives pages back to the system only from the top
of the heap. After a burst (a full pass over every row, 64 list pages answered at once, a listing of
100 pages) a large part of the heap was free yet still counted in the resident memory, which then crept
up over an idle soak (docs/performance.md). `malloc_trim(0)` returns every free page wherever it lies
(madvise), in about a millisecond. Elsewhere than glibc (musl, macOS)
this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable

import structlog

log = structlog.get_logger(__name__)


def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        trim: Callable[[int], int] = ctypes.CDLL(name or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


_TRIM = _malloc_trim()


def release_free_memory() -> None:
    """Give the heap's free pages back to the system (glibc); a no-op where that is not possible."""
    if _TRIM is None:
        return
    try:
        _TRIM(0)
    except OSError:  # pragma: no cover - the call itself does not fail on glibc
        log.debug("malloc_trim_failed", exc_info=True)
