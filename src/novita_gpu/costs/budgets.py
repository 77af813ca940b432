"""Budgets per API key, and the worker that keeps costs current and enforces budgets.

A budget caps a key's spend per calendar month (UTC), its instances' and its volumes' alike
(report.month_spend). Once spend reaches it, creates are refused (403 BUDGET_EXCEEDED) whatever
`onExceeded` says; with `stopAll` every instance of that key that Novita may bill is stopped (reason
BUDGET_EXCEEDED), and starts are refused too (a start spends as a create does). Other keys' instances are
never touched, and no volume is: stopping deletes no data, so a key's volumes go on billing (and on
counting towards its spend). The crossing is recorded once per month as an account event,
`budget.exceeded`, written with its webhook deliveries (to the budget's own `webhookUrl` and to
WEBHOOK_URL) in the transaction that marks the budget exceeded. The deliveries are rows of the one outbox,
`webhook_deliveries`, linked to the account event rather than to an instance: the webhook dispatcher sends
them as it sends instance events (leases, signatures, SSRF guard, backoff, expiry, per-receiver resume,
metrics, /health), and `exceeded` wakes it.

The worker (every BUDGET_CHECK_SECONDS, and at the next projected crossing) also moves each billing
instance's accrued cost forward (meter.checkpoint), so instance views are at most that stale.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import Row, and_, bindparam, or_, select

from novita_gpu.audit import actions, recorder
from novita_gpu.costs.meter import checkpoint
from novita_gpu.costs.report import Spend, month_key, month_spend, next_month_start
from novita_gpu.instances.lifecycle import Reason, Status
from novita_gpu.instances.rendering import delivery_view, iso
from novita_gpu.instances.service import InstanceService
from novita_gpu.kit.clock import Clock
from novita_gpu.kit.db import Database
from novita_gpu.kit.errors import BudgetExceeded, BudgetLocked
from novita_gpu.kit.settings import Settings
from novita_gpu.kit.signals import Signal
from novita_gpu.kit.tables import AccountEvent, Budget, Instance, WebhookDelivery
from novita_gpu.kit.workers import PeriodicWorker
from novita_gpu.observability.metrics import Metrics
from novita_gpu.webhooks.guard import WebhookPolicy, checked_webhook_url

log = structlog.get_logger(__name__)

BUDGET_EXCEEDED = "budget.exceeded"
MIN_SLEEP_SECONDS = 0.05
# Statuses in which Novita may bill an instance (or is about to): what stopAll stops.
STOPPABLE = (Status.CREATING, Status.STARTING, Status.RUNNING, Status.HEALTH_CHECKING, Status.READY)


# What a create or start is checked against.
_GUARDED_BY = select(Budget.monthly_limit_usd, Budget.on_exceeded, Budget.set_by_admin).where(
    Budget.owner == bindparam("owner")
)


def _spent(spend: Spend, budget: Budget | Row[Any]) -> bool:
    return spend.spent >= budget.monthly_limit_usd


class Budgets(PeriodicWorker):
    name = "budgets"
    pauses_on_clock = True  # it sleeps until the next projected crossing

    def __init__(
        self,
        db: Database,
        clock: Clock,
        instances: InstanceService,
        settings: Settings,
        metrics: Metrics,
        policy: WebhookPolicy,
    ) -> None:
        super().__init__(clock)
        self.db = db
        self.instances = instances
        self.settings = settings
        self.metrics = metrics
        self.policy = policy
        self.retry_seconds = settings.budget_check_seconds
        # A key's budget.exceeded was committed with its webhook deliveries (about: the key's id).
        self.exceeded: Signal[str] = Signal()

    @property
    def allowed_gap(self) -> float:
        return self.settings.budget_check_seconds * 3 + 30

    async def step(self) -> float:
        now = self.clock.now()
        self.last_run_at = now
        await checkpoint(self.db, now, on_written=self.instances.reads.move_costs)  # views show the new figures
        await self.enforce(now)
        return await self.seconds_until_next(now)

    # -- reading ---------------------------------------------------------------------------------

    async def _budget(self, owner: str) -> Budget | None:
        async with self.db.read() as session:
            return await session.get(Budget, owner)

    async def view(self, owner: str) -> dict[str, Any]:
        """The key's budget (limit null when none is set) with spend so far and the projected month end."""
        now = self.clock.now()
        budget = await self._budget(owner)
        spend = (await month_spend(self.db, owner, now))[owner]
        hours_left = (next_month_start(now) - now).total_seconds() / 3600.0
        limit = budget.monthly_limit_usd if budget else None
        exceeded = budget is not None and (_spent(spend, budget) or budget.exceeded_month == month_key(now))
        return {
            "apiKey": owner,
            "monthlyLimitUsd": limit,
            "onExceeded": budget.on_exceeded if budget else None,
            "webhookUrl": budget.webhook_url if budget else None,
            "setBy": ("admin" if budget.set_by_admin else "self") if budget else None,
            "month": month_key(now),
            "spentUsd": round(spend.spent, 6),
            "ratePerHourUsd": round(spend.rate_per_hour, 6),
            "projectedUsd": round(spend.spent + spend.rate_per_hour * hours_left, 6),
            "remainingUsd": None if limit is None else round(max(0.0, limit - spend.spent), 6),
            "exceeded": exceeded,
            "exceededAt": iso(budget.exceeded_at) if budget and budget.exceeded_month == month_key(now) else None,
            "updatedAt": iso(budget.updated_at) if budget else None,
        }

    async def events(self, owner: str) -> dict[str, Any]:
        """The key's account events, newest first, with their webhook deliveries."""
        async with self.db.read() as session:
            events = (
                await session.execute(
                    select(AccountEvent).where(AccountEvent.owner == owner).order_by(AccountEvent.id.desc()).limit(100)
                )
            ).scalars()
            found = list(events)
            deliveries = (
                await session.execute(
                    select(WebhookDelivery).where(WebhookDelivery.account_event_id.in_([e.id for e in found]))
                )
            ).scalars()
            by_event: dict[int | None, list[dict[str, Any]]] = {}
            for d in deliveries:
                by_event.setdefault(d.account_event_id, []).append(delivery_view(d))
        return {
            "apiKey": owner,
            "events": [
                {
                    "id": e.id,
                    "event": e.event,
                    "at": iso(e.created_at),
                    "payload": e.payload,
                    "webhooks": by_event.get(e.id, []),
                }
                for e in found
            ],
        }

    # -- writing ---------------------------------------------------------------------------------

    async def put(
        self, owner: str, *, limit: float, on_exceeded: str, webhook_url: str | None, by_admin: bool
    ) -> dict[str, Any]:
        checked = checked_webhook_url(webhook_url, self.policy)
        now = self.clock.now()
        async with self.db.write() as session:
            budget = await session.get(Budget, owner, with_for_update=self.db.locks_rows)
            if budget is not None and budget.set_by_admin and not by_admin:
                raise BudgetLocked()
            if budget is None:
                budget = Budget(owner=owner, exceeded_month=None, exceeded_at=None)
                session.add(budget)
            budget.monthly_limit_usd = limit
            budget.on_exceeded = on_exceeded
            budget.webhook_url = checked
            budget.set_by_admin = by_admin
            budget.updated_at = now
            spend = (await month_spend(self.db, owner, now))[owner]
            if not _spent(spend, budget):  # raised above this month's spend: a later crossing is news again
                budget.exceeded_month = None
                budget.exceeded_at = None
        self.wake()  # a limit already reached is acted on at once
        return await self.view(owner)

    async def delete(self, owner: str, *, by_admin: bool) -> dict[str, Any]:
        async with self.db.write() as session:
            budget = await session.get(Budget, owner, with_for_update=self.db.locks_rows)
            if budget is not None:
                if budget.set_by_admin and not by_admin:
                    raise BudgetLocked()
                await session.delete(budget)
        return await self.view(owner)

    # -- enforcing -------------------------------------------------------------------------------

    async def guard(self, owner: str, action: str) -> None:
        """Refuse a create (any budget reached) or a start (a stopAll budget reached): BudgetExceeded."""
        found = await self.db.fetch(_GUARDED_BY, {"owner": owner})  # every create asks: Core, not the ORM
        budget = found[0] if found else None
        if budget is None or (action == "start" and budget.on_exceeded != "stopAll"):
            return
        now = self.clock.now()
        spend = (await month_spend(self.db, owner, now))[owner]
        if not _spent(spend, budget):
            return
        who = "an administrator" if budget.set_by_admin else "this key"
        raise BudgetExceeded(
            f"This key has spent ${spend.spent:.2f} of its ${budget.monthly_limit_usd:.2f} monthly budget "
            f"(set by {who}) in {month_key(now)}: {action}s are refused until "
            f"{iso(next_month_start(now))} or until the budget is raised (PUT /api/budget).",
        )

    async def enforce(self, now: datetime) -> list[str]:
        """Act on every budget reached this month and not acted on yet; the keys acted on."""
        async with self.db.read() as session:
            budgets = list((await session.execute(select(Budget))).scalars())
        if not budgets:
            return []
        spends = await month_spend(self.db, None, now)
        crossed = [
            b for b in budgets if b.exceeded_month != month_key(now) and _spent(spends.get(b.owner, Spend(0, 0)), b)
        ]
        for budget in crossed:
            await self._exceeded(budget.owner, spends.get(budget.owner, Spend(0, 0)), now)
        return [b.owner for b in crossed]

    async def _exceeded(self, owner: str, spend: Spend, now: datetime) -> None:
        """In one transaction: mark the month, stop the key's instances (stopAll), write the event and its
        deliveries. A replica that got there first leaves nothing to do."""
        stopped: list[str] = []
        async with self.db.write() as session:
            budget = await session.get(Budget, owner, with_for_update=self.db.locks_rows)
            if budget is None or budget.exceeded_month == month_key(now):
                return
            budget.exceeded_month = month_key(now)
            budget.exceeded_at = now
            if budget.on_exceeded == "stopAll":
                stopped = await self._stop_all(session, owner, budget, spend)
            payload: dict[str, Any] = {
                "event": BUDGET_EXCEEDED,
                "apiKey": owner,
                "timestamp": iso(now),
                "data": {
                    "month": month_key(now),
                    "monthlyLimitUsd": budget.monthly_limit_usd,
                    "spentUsd": round(spend.spent, 6),
                    "onExceeded": budget.on_exceeded,
                    "stoppedInstances": stopped,
                },
            }
            event = AccountEvent(owner=owner, event=BUDGET_EXCEEDED, created_at=now, payload=payload)
            session.add(event)
            self._audit(session, owner, payload["data"], now)
            await session.flush()
            targets = dict.fromkeys(url for url in (budget.webhook_url, self.settings.webhook_url) if url)
            for url in targets:
                session.add(
                    WebhookDelivery(
                        id=f"msg_{uuid.uuid4().hex}",
                        account_event_id=event.id,
                        url=url,
                        event=BUDGET_EXCEEDED,
                        payload=payload,
                        status="pending",
                        attempts=0,
                        next_attempt_at=now,
                        created_at=now,
                    )
                )
        log.warning("budget_exceeded", api_key=owner, spent=round(spend.spent, 2), stopped=len(stopped))
        for instance_id in stopped:
            self.instances.notify_changed(instance_id)
        self.exceeded.emit(owner)

    @staticmethod
    def _audit(session: Any, owner: str, data: dict[str, Any], now: datetime) -> None:
        """The crossing and each stop of its stopAll, as audit rows of the same transaction."""
        for instance_id in data["stoppedInstances"]:
            why = {"reason": str(Reason.BUDGET_EXCEEDED), "month": data["month"]}
            stop = recorder.system(actions.BUDGET, "instance.stop", team=owner, target=instance_id, details=why)
            recorder.add(session, stop, now)
        summary = {**data, "stoppedInstances": len(data["stoppedInstances"])}
        crossed = recorder.system(actions.BUDGET, BUDGET_EXCEEDED, team=owner, target=owner, details=summary)
        recorder.add(session, crossed, now)

    async def _stop_all(self, session: Any, owner: str, budget: Budget, spend: Spend) -> list[str]:
        query = select(Instance).where(
            Instance.owner == owner,
            or_(
                Instance.status.in_(STOPPABLE),
                and_(Instance.status == Status.FAILED, Instance.billing_since.is_not(None)),
            ),
        )
        query = self.db.locked(query)
        message = (
            f"Budget exceeded: ${spend.spent:.2f} spent of the ${budget.monthly_limit_usd:.2f} monthly budget "
            "(onExceeded: stopAll)."
        )
        stopped = []
        for row in (await session.execute(query)).scalars():
            result = await self.instances.stop_row(session, row, Reason.BUDGET_EXCEEDED, message=message)
            if result.changed:
                stopped.append(row.id)
        return stopped

    async def seconds_until_next(self, now: datetime) -> float:
        """At most a check interval; sooner when a budget will be reached before (at its current rate)."""
        interval = self.settings.budget_check_seconds
        async with self.db.read() as session:
            budgets = list((await session.execute(select(Budget))).scalars())
        spends = await month_spend(self.db, None, now) if budgets else {}
        waits = [interval]
        for budget in budgets:
            spend = spends.get(budget.owner, Spend(0, 0))
            if budget.exceeded_month != month_key(now) and spend.rate_per_hour > 0:
                waits.append(
                    max(MIN_SLEEP_SECONDS, (budget.monthly_limit_usd - spend.spent) / spend.rate_per_hour * 3600)
                )
        return min(waits)

    # -- gauges ----------------------------------------------------------------------------------

    async def refresh_gauges(self) -> None:
        """Spend this month and the current burn rate per key, and each budget's limit (for /metrics)."""
        now = self.clock.now()
        spends = await month_spend(self.db, None, now)
        async with self.db.read() as session:
            limits = {b.owner: b.monthly_limit_usd for b in (await session.execute(select(Budget))).scalars()}
        self.metrics.set_costs(
            {key: (s.spent, s.rate_per_hour) for key, s in spends.items()},
            limits,
        )
