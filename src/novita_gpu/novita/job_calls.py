"""The job calls of `NovitaClient`: Novita's jobs (`GET /jobs`), such as the `instanceMigrate` job each
migrate makes. Read-only, so retried freely."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import TypedDict, Unpack

from novita_gpu.novita.models import Job, JobPage
from novita_gpu.novita.paging import walk_pages
from novita_gpu.novita.parsing import parse
from novita_gpu.novita.transport import Transport

JOB_ENDPOINTS: tuple[str, ...] = ("jobs.list",)


class JobQuery(TypedDict, total=False):
    """Which jobs `list_jobs` and `iter_jobs` ask for; unset: every one. `state` is one of `pulling`,
    `running`, `fail`, `success`, `break`; `type` one of `saveImage`, `instanceMigrate`,
    `autoInstanceMigrate`; `start_time`/`end_time` bound the creation time (unix seconds)."""

    job_id: str | None
    state: str | None
    type: str | None
    start_time: float | None
    end_time: float | None
    creators: Sequence[str] | None


class JobCalls:
    _transport: Transport

    async def list_jobs(self, *, page_num: int = 1, page_size: int = 100, **query: Unpack[JobQuery]) -> JobPage:
        """One page of the account's jobs (Novita's order; the emulator's is newest first)."""
        start, end, creators = query.get("start_time"), query.get("end_time"), query.get("creators")
        params = {
            "pageNum": page_num,
            "pageSize": page_size,
            "jobId": query.get("job_id"),
            "state": query.get("state"),
            "type": query.get("type"),
            "startTime": None if start is None else int(start),
            "endTime": None if end is None else int(end),
            "creators": ",".join(creators) if creators else None,
        }
        body = await self._transport.call("jobs.list", "GET", "/jobs", params=params)
        return parse(JobPage, body)

    def iter_jobs(self, *, page_size: int = 100, **query: Unpack[JobQuery]) -> AsyncIterator[Job]:
        """Every matching job, page by page (each id at most once)."""
        return walk_pages(lambda n: self.list_jobs(page_num=n, page_size=page_size, **query), page_size)
