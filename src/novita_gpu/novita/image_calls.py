"""The image prewarm calls of `NovitaClient` (reference §4.18): ask Novita to pull an image onto a cluster's
nodes ahead of the creates that need it, follow the task, and delete it. The create is sent once (a repeat
could make a second task, and tasks count against a small quota); reads and deletes are retried."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from novita_gpu.novita.models import PrewarmQuota, PrewarmTask, PrewarmTaskPage
from novita_gpu.novita.paging import walk_pages
from novita_gpu.novita.parsing import invalid_response, parse
from novita_gpu.novita.transport import Transport

IMAGE_ENDPOINTS: tuple[str, ...] = (
    "image_prewarm.list",
    "image_prewarm.create",
    "image_prewarm.delete",
    "image_prewarm.quota",
)


class ImageCalls:
    _transport: Transport

    async def create_prewarm_task(
        self,
        image_url: str,
        cluster_id: str,
        *,
        repository_auth: str | None = None,
        product_ids: Sequence[str] | None = None,
        note: str | None = None,
    ) -> str:
        """Ask Novita to prewarm `image_url` in `cluster_id` (for `product_ids`' nodes only, when given;
        `repository_auth` is a registry auth id for a private image) and return the task's id. Sent once:
        a failure after the request may have arrived is raised as it came, and the caller lists the
        cluster's tasks before asking again."""
        body: dict[str, object] = {"imageUrl": image_url, "clusterId": cluster_id}
        if repository_auth:
            body["repositoryAuth"] = repository_auth
        if product_ids:
            body["productIds"] = list(product_ids)
        if note:
            body["note"] = note
        answer = await self._transport.send_once("image_prewarm.create", "/image/prewarm", body)
        task_id = answer.get("id") if isinstance(answer, dict) else answer
        if isinstance(task_id, int | str) and not isinstance(task_id, bool) and str(task_id).strip():
            return str(task_id).strip()
        raise invalid_response("the prewarm create answered no task id")

    async def list_prewarm_tasks(
        self,
        *,
        page: int = 1,
        page_size: int = 100,
        cluster_id: str | None = None,
        state: str | None = None,
        name: str | None = None,
    ) -> PrewarmTaskPage:
        """One page of the account's prewarm tasks; `state` is `Pending`, `Running`, `Succeeded` or
        `Failed`, `name` matches the image name (Novita names the page number `page` here)."""
        params = {"page": page, "pageSize": page_size, "clusterId": cluster_id, "state": state, "name": name}
        body = await self._transport.call("image_prewarm.list", "GET", "/image/prewarm", params=params)
        return parse(PrewarmTaskPage, body)

    def iter_prewarm_tasks(
        self, *, cluster_id: str | None = None, state: str | None = None, page_size: int = 100
    ) -> AsyncIterator[PrewarmTask]:
        """Every matching task, page by page (each id at most once)."""
        return walk_pages(
            lambda n: self.list_prewarm_tasks(page=n, page_size=page_size, cluster_id=cluster_id, state=state),
            page_size,
        )

    async def delete_prewarm_tasks(self, task_ids: Sequence[str]) -> None:
        """Delete these tasks (Novita takes several at once); an unknown id is `NotFound`."""
        if not task_ids:
            return
        await self._transport.call(
            "image_prewarm.delete", "POST", "/image/prewarm/delete", json_body={"ids": list(task_ids)}
        )

    async def prewarm_quota(self) -> PrewarmQuota:
        body = await self._transport.call("image_prewarm.quota", "GET", "/image/prewarm/quota")
        return parse(PrewarmQuota, body)
