"""Walking Novita's paged listings: one helper behind every `iter_*` call, so each is its list call plus a
page size, and the stopping rules (short page, total reached, a server ignoring the page number) live once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

# List pages fetched at once after the first (which gives the total): 10,000 instances are 100 pages, and
# fetched one after the other a listing took seconds even against the local emulator.
LIST_CONCURRENCY = 4


class _Identified(Protocol):
    @property
    def id(self) -> str: ...


Item = TypeVar("Item", bound=_Identified)
Item_co = TypeVar("Item_co", bound=_Identified, covariant=True)


class Paged(Protocol[Item_co]):
    """One page of a listing: its items and the total Novita reports (0 when it gives none)."""

    @property
    def items(self) -> Sequence[Item_co]: ...

    @property
    def total(self) -> int: ...


@dataclass(frozen=True)
class Page(Generic[Item]):
    """A page built by hand, for listings whose items are not a page model's (`Listed`)."""

    items: Sequence[Item]
    total: int


async def walk_pages(
    fetch: Callable[[int], Awaitable[Paged[Item]]], page_size: int, concurrency: int = 1
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
        for page_num, page in zip(window, pages, strict=True):
            items, total = page.items, page.total
            fresh = [item for item in items if item.id not in seen]
            for item in fresh:
                seen.add(item.id)
                yield item
            if len(items) < page_size or not fresh or (total > 0 and page_num * page_size >= total):
                return
