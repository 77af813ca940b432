"""The calls of `NovitaClient` on objects an account keeps beside its instances: registry credentials and
network storages. Their creates answer with little or no id, so each looks the new object up itself."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from novita_gpu.novita.models import NetworkStorage, NetworkStoragePage, RegistryAuth
from novita_gpu.novita.paging import walk_pages
from novita_gpu.novita.parsing import invalid_response, parse, parse_list
from novita_gpu.novita.transport import Transport

ACCOUNT_ENDPOINTS: tuple[str, ...] = (
    "registry_auths.list",
    "registry_auths.create",
    "registry_auths.delete",
    "network_storages.list",
    "network_storages.create",
    "network_storages.update",
    "network_storages.delete",
)


class AccountCalls:
    _transport: Transport

    # ---- registry auths ------------------------------------------------------------------------

    async def list_registry_auths(self) -> list[RegistryAuth]:
        body = await self._transport.call("registry_auths.list", "GET", "/repository/auths")
        return parse_list(RegistryAuth, body, "data")

    async def create_registry_auth(self, name: str, username: str, password: str) -> RegistryAuth:
        """Save registry credentials and return them with their id. Novita answers the save with `{}`,
        so the id is the one auth with this name and username that the list did not hold before."""
        before = {auth.id for auth in await self.list_registry_auths()}
        credentials = {"name": name, "username": username, "password": password}
        await self._write_once("registry_auths.create", "/repository/auth/save", credentials)
        new = [
            auth
            for auth in await self.list_registry_auths()
            if auth.id not in before and auth.name == name and auth.username == username
        ]
        if len(new) != 1:
            raise invalid_response(f"found {len(new)} new registry auths named {name!r} after saving one")
        return new[0]

    async def delete_registry_auth(self, auth_id: str) -> None:
        await self._transport.call(
            "registry_auths.delete", "POST", "/repository/auth/delete", json_body={"id": auth_id}
        )

    # ---- network storage -----------------------------------------------------------------------

    async def list_network_storages(
        self,
        *,
        page_no: int = 1,
        page_size: int = 100,
        storage_name: str | None = None,
        storage_id: str | None = None,
    ) -> NetworkStoragePage:
        """One page; Novita names the page number `pageNo` here (not `pageNum`)."""
        params = {"pageNo": page_no, "pageSize": page_size, "storageName": storage_name, "storageId": storage_id}
        body = await self._transport.call("network_storages.list", "GET", "/networkstorages/list", params=params)
        return parse(NetworkStoragePage, body)

    def iter_network_storages(
        self, *, storage_name: str | None = None, page_size: int = 100
    ) -> AsyncIterator[NetworkStorage]:
        return walk_pages(
            lambda n: self.list_network_storages(page_no=n, page_size=page_size, storage_name=storage_name), page_size
        )

    async def create_network_storage(self, cluster_id: str, name: str, size_gb: int) -> str:
        """Create a network storage and return its id. Novita documents the answer as a bare JSON string
        (the id); an object with `storageId`/`id` is taken too, and an answer without one is resolved by
        the only storage of that name in that cluster."""
        wanted = {"clusterId": cluster_id, "storageName": name, "storageSize": size_gb}
        body = await self._write_once("network_storages.create", "/networkstorage/create", wanted)
        if isinstance(body, dict):
            body = body.get("storageId") or body.get("id") or body.get("data")
        if isinstance(body, str) and body.strip():
            return body.strip()
        found = [
            s
            async for s in self.iter_network_storages(storage_name=name)
            if s.storage_name == name and s.cluster_id == cluster_id
        ]
        if len(found) != 1:
            raise invalid_response(f"create answered no id and {len(found)} storages are named {name!r}")
        return found[0].storage_id

    async def update_network_storage(self, storage_id: str, name: str, size_gb: int) -> None:
        """Rename and/or grow (Novita refuses to shrink). Sent once: a repeat could meet a changed size."""
        wanted = {"storageId": storage_id, "storageName": name, "storageSize": size_gb}
        await self._write_once("network_storages.update", "/networkstorage/update", wanted)

    async def delete_network_storage(self, storage_id: str) -> None:
        await self._transport.call(
            "network_storages.delete", "POST", "/networkstorage/delete", json_body={"storageId": storage_id}
        )

    async def _write_once(self, endpoint: str, path: str, body: Mapping[str, Any]) -> Any:
        """POST a create or update that is not sent again once Novita may have acted on it (a repeat could
        make a second object or meet a changed one): its failure is raised as it came."""
        return await self._transport.send_once(endpoint, path, body)
