"""Walking Novita's paged listings: the stopping rules (short page, total reached, a server ignoring the
page number) in one place for every `iter_*` call."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol, TypeVar

# List pages fetched at once after the first (which gives the total): 10,000 instances are 100 pages, and
# fetched one after the other a listing took seconds even against the local emulator.
LIST_CONCURRENCY = 4


class _Identified(Protocol):
    @property
    def id(self) -> str: ...


Item = TypeVar("Item", bound=_Identified)


async def walk_pages(
    fetch: Callable[[int], Awaitable[tuple[list[Item], int]]], page_size: int, concurrency: int = 1
) -> AsyncIterator[Item]:
    """Items of pages 1, 2, ... (each id at most once: items created or deleted meanwhile shift pages).

    Stops on a short page, at `total`, or when a page brings nothing new (a server ignoring pageNum).
    Fetches up to `concurrency` pages at once up to the total the latest page gave; one at a time
    without a total.
    """
    seen: set[str] = set()
    page_num, total = 0, 0
    while True:
        remaining = -(-total // page_size) - page_num if total > 0 else 1
        window = range(page_num + 1, page_num + 1 + max(1, min(concurrency, remaining)))
        pages = await asyncio.gather(*(fetch(n) for n in window)) if len(window) > 1 else [await fetch(window[0])]
        for page_num, (items, total) in zip(window, pages, strict=True):
            fresh = [item for item in items if item.id not in seen]
            for item in fresh:
                seen.add(item.id)
                yield item
            if len(items) < page_size or not fresh or (total > 0 and page_num * page_size >= total):
                return
