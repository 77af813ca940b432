"""Warm pools in both clients, written once as volumes and teams are: every request as a `Call`, and
`PoolMethods`, which `Methods` (and so `Client` and `AsyncClient`) takes its pool methods from.

A pool keeps idle members of one spec: `min_ready` running and ready, `min_stopped` created, booted once
and stopped, `max` members at most (claimed ones included). A claim hands out a ready member at once, else
starts a stopped one, else creates one cold from the pool's spec; the answer says which (`claim.source`).
A claimed instance stopped with `return_to_pool=True` goes back as a stopped member if the pool has room,
else it is deleted. Reads take any key of the team, a claim a member's, the rest an admin's.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Literal
from urllib.parse import quote

from novita_gpu_client.calls import Call, Json
from novita_gpu_client.mixins import Answer, CallMethods, Items
from novita_gpu_client.mounts import VolumeMount, volume_mounts

BillingMode = Literal["onDemand", "spot"]
# Where a claim's instance came from, and what state an instance has in its pool (the view's `pool.state`).
ClaimSource = Literal["ready", "stopped", "warming", "cold"]
CLAIM_SOURCES: tuple[ClaimSource, ...] = ("ready", "stopped", "warming", "cold")
MemberState = Literal["ready", "stopped", "claimed"]

# -- the requests ---------------------------------------------------------------------------------------


def _pool(name: str, suffix: str = "") -> str:
    """A pool's path: one segment whatever the name holds ("../x" never reaches another route)."""
    return f"/api/pools/{quote(name, safe='')}{suffix}"


def _given(values: Mapping[str, Any]) -> Json:
    """The fields given (None leaves one out, for the server's default or the value kept)."""
    return {key: value for key, value in values.items() if value is not None}


def create(
    name: str,
    product_name: str,
    template_id: str | int,
    *,
    max: int,
    gpu_num: int | None = None,
    region: str | None = None,
    billing_mode: BillingMode | None = None,
    rootfs_size: int | None = None,
    volumes: Sequence[VolumeMount] | None = None,
    health_check_path: str | None = None,
    min_ready: int | None = None,
    min_stopped: int | None = None,
    idle_minutes: int | None = None,
    return_on_auto_stop: bool | None = None,
    prewarm: bool | None = None,
) -> Call:
    body = _given(
        {
            "name": name,
            "productName": product_name,
            "templateId": template_id,
            "gpuNum": gpu_num,
            "region": region,
            "billingMode": billing_mode,
            "rootfsSize": rootfs_size,
            "volumes": volume_mounts(volumes) if volumes is not None else None,
            "healthCheck": {"path": health_check_path} if health_check_path is not None else None,
            **_targets(min_ready, min_stopped, max, idle_minutes, return_on_auto_stop, prewarm),
        }
    )
    # Not retried: a second create of the name is 409 NAME_TAKEN (the first may have been made).
    return Call("POST", "/api/pools", body=body)


def list_pools() -> Call:
    return Call("GET", "/api/pools", retryable=True)


def get(name: str) -> Call:
    return Call("GET", _pool(name), retryable=True)


def _targets(
    min_ready: int | None,
    min_stopped: int | None,
    max: int | None,
    idle_minutes: int | None,
    return_on_auto_stop: bool | None,
    prewarm: bool | None,
) -> dict[str, object]:
    """What a pool keeps and how, in the API's words: a create's and an update's alike."""
    return {
        "minReady": min_ready,
        "minStopped": min_stopped,
        "max": max,
        "idleMinutes": idle_minutes,
        "returnOnAutoStop": return_on_auto_stop,
        "prewarm": prewarm,
    }


def update(
    name: str,
    *,
    min_ready: int | None = None,
    min_stopped: int | None = None,
    max: int | None = None,
    idle_minutes: int | None = None,
    return_on_auto_stop: bool | None = None,
    prewarm: bool | None = None,
) -> Call:
    body = _given(_targets(min_ready, min_stopped, max, idle_minutes, return_on_auto_stop, prewarm))
    # The same PATCH again sets the same values: harmless to repeat.
    return Call("PATCH", _pool(name), body=body, retryable=True)


def delete(name: str) -> Call:
    # A repeat answers the pool draining, or 404 once it is gone.
    return Call("DELETE", _pool(name), retryable=True)


def claim(
    pool: str,
    name: str,
    *,
    labels: Mapping[str, str] | None = None,
    webhook_url: str | None = None,
    auto_stop_minutes: int | None = None,
    auto_stop: Mapping[str, Any] | None = None,
    max_runtime_minutes: int | None = None,
    recovery: Mapping[str, Any] | None = None,
    idempotency_key: str | None = None,
) -> Call:
    """A claim that is safe to retry: it always carries an Idempotency-Key (a fresh one unless given), so a
    retry answers the instance the first one claimed rather than claiming a second."""
    body = _given(
        {
            "name": name,
            "labels": dict(labels) if labels is not None else None,
            "webhookUrl": webhook_url,
            "autoStopMinutes": auto_stop_minutes,
            "autoStop": dict(auto_stop) if auto_stop is not None else None,
            "maxRuntimeMinutes": max_runtime_minutes,
            "recovery": dict(recovery) if recovery is not None else None,
        }
    )
    key = idempotency_key or f"sdk-{uuid.uuid4()}"
    return Call("POST", _pool(pool, "/claim"), body=body, headers={"Idempotency-Key": key}, retryable=True)


# -- the methods ------------------------------------------------------------------------------------------


class PoolMethods(CallMethods[Answer, Items]):
    """The warm pool methods of `Client` and `AsyncClient` (through `Methods`): answers as the client gives
    them, at once (blocking) or to be awaited. A pool's view: `{poolId, name, team, status (active |
    draining), productName, templateId, gpuNum, region, billingMode, rootfsSize, volumes, healthCheck,
    minReady, minStopped, max, idleMinutes, returnOnAutoStop, prewarm: {enabled, tasks}, dormant, members:
    {ready, stopped, warming, claimed, total}, claims: {lastHour, lastDay, hitRate: {ready, stopped,
    warming, cold}}, idleCost: {usdPerHour, readyUsdPerHour, stoppedUsdPerHour, monthUsd}, refillBlocked,
    lastClaimAt, createdAt, updatedAt}` (hit rates are fractions of the last day's claims)."""

    def create_pool(
        self,
        name: str,
        product_name: str,
        template_id: str | int,
        *,
        max: int,
        gpu_num: int | None = None,
        region: str | None = None,
        billing_mode: BillingMode | None = None,
        rootfs_size: int | None = None,
        volumes: Sequence[VolumeMount] | None = None,
        health_check_path: str | None = None,
        min_ready: int = 0,
        min_stopped: int = 0,
        idle_minutes: int | None = None,
        return_on_auto_stop: bool | None = None,
        prewarm: bool | None = None,
    ) -> Answer:
        """Admin keys: make a pool (201) whose members are `product_name` x `gpu_num` from `template_id`,
        keeping `min_ready` of them ready and `min_stopped` stopped, `max` members at most (1-100, claimed
        ones included; it wins over `min_ready + min_stopped`). `idle_minutes`: with no claim for this long,
        ready members are stopped until the next claim (0, the default, never). `return_on_auto_stop`: a
        claimed instance's auto-stop returns it to the pool. `prewarm`: ask Novita to prewarm the image in
        the pool's clusters. `ApiError` 409 NAME_TAKEN, 400 VALIDATION_ERROR / UNKNOWN_PRODUCT /
        UNKNOWN_TEMPLATE / UNKNOWN_REGION."""
        call = create(
            name,
            product_name,
            template_id,
            max=max,
            gpu_num=gpu_num,
            region=region,
            billing_mode=billing_mode,
            rootfs_size=rootfs_size,
            volumes=volumes,
            health_check_path=health_check_path,
            min_ready=min_ready,
            min_stopped=min_stopped,
            idle_minutes=idle_minutes,
            return_on_auto_stop=return_on_auto_stop,
            prewarm=prewarm,
        )
        return self._send(call)

    def list_pools(self) -> Answer:
        """`{pools: [...]}`: the team's pools, each as `get_pool` gives it."""
        return self._send(list_pools())

    def get_pool(self, name: str) -> Answer:
        """A pool by name: its members by state, claims and hit rates, idle cost; 404 POOL_NOT_FOUND."""
        return self._send(get(name))

    def update_pool(
        self,
        name: str,
        *,
        min_ready: int | None = None,
        min_stopped: int | None = None,
        max: int | None = None,
        idle_minutes: int | None = None,
        return_on_auto_stop: bool | None = None,
        prewarm: bool | None = None,
    ) -> Answer:
        """Admin keys: change a pool's targets and policies (None keeps a value; the spec is fixed)."""
        call = update(
            name,
            min_ready=min_ready,
            min_stopped=min_stopped,
            max=max,
            idle_minutes=idle_minutes,
            return_on_auto_stop=return_on_auto_stop,
            prewarm=prewarm,
        )
        return self._send(call)

    def delete_pool(self, name: str) -> Answer:
        """Admin keys: drain and delete a pool (202, the pool `draining`): its idle members are deleted in
        the background, claimed ones stay yours; then `get_pool` is 404."""
        return self._send(delete(name))

    def claim(
        self,
        pool: str,
        name: str,
        *,
        labels: Mapping[str, str] | None = None,
        webhook_url: str | None = None,
        auto_stop_minutes: int | None = None,
        auto_stop: Mapping[str, Any] | None = None,
        max_runtime_minutes: int | None = None,
        recovery: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> Answer:
        """Claim an instance called `name` from `pool` (201): the instance's view (as `get`) with `message`
        and `claim: {pool, source}`, where source is ready (handed out ready, at once), stopped (a stopped
        member started), warming (a member on its way up) or cold (created from the pool's spec). From then
        on it is an ordinary instance (`wait_for` it unless ready). Each call sends an Idempotency-Key (a
        fresh one unless given), so its retries never claim twice. `ApiError` 409 POOL_EXHAUSTED (all `max`
        members claimed), 409 NAME_TAKEN, 404 POOL_NOT_FOUND, 403 QUOTA_EXCEEDED / BUDGET_EXCEEDED."""
        call = claim(
            pool,
            name,
            labels=labels,
            webhook_url=webhook_url,
            auto_stop_minutes=auto_stop_minutes,
            auto_stop=auto_stop,
            max_runtime_minutes=max_runtime_minutes,
            recovery=recovery,
            idempotency_key=idempotency_key,
        )
        return self._send(call)
