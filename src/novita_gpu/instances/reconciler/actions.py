"""Start, stop and delete: sending the action a row owes Novita, and its deadline.

An accepted action is cleared from the row; one Novita refuses in the instance's state (a stop while the
image is still pulling) is asked again, backing off. A stop or delete not carried out by ACTION_TIMEOUT_SECONDS
is overdue (`overdue`): a stop of an instance that never finished booting becomes a delete, anything else
ends the row `failed` while the action is still asked for. And when Novita shows an instance running that
the row wants stopped or deleted, the action is owed again (`reissue`): the reconciler is level-triggered.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from novita_gpu.instances.lifecycle import Action, Goal, Reason, Status, is_leaving, phase_of
from novita_gpu.instances.reconciler.writes import RowWrites
from novita_gpu.kit.clock import Clock
from novita_gpu.kit.settings import Settings
from novita_gpu.kit.tables import Instance
from novita_gpu.novita import (
    InsufficientResource,
    InvalidStateChange,
    Listed,
    NotFound,
    NovitaClient,
    NovitaError,
    RateLimited,
)

log = structlog.get_logger(__name__)

# Upstream statuses in which a start request is satisfied / a stop request is satisfied.
_STARTED = {"toStart", "starting", "pulling", "running", "toRestart", "restarting"}
_STOPPED = {"toStop", "stopping", "exited"}
# How long after its last write a row waits for an accepted action to show in Novita's list before asking again.
_SHOWS_WITHIN = timedelta(seconds=5)


def action_done(row: Instance, upstream: Listed | None) -> bool:
    """Whether Novita shows the stop or delete of `row` carried out (or under way), though nobody here saw
    it accepted: a process that sent it was killed, and its lease kept the row from the others meanwhile."""
    if row.status == Status.STOPPING:
        return upstream is not None and phase_of(upstream.status) in (Status.STOPPING, Status.STOPPED)
    return upstream is None or is_leaving(upstream.status)


@dataclass(eq=False)
class Actions:
    writes: RowWrites
    client: NovitaClient
    clock: Clock
    settings: Settings
    # A start refused for capacity, in the row's write: True when the row's pool took it over.
    start_refused: Callable[[AsyncSession, Instance], Awaitable[bool]] | None = None

    async def act(self, row: Instance, upstream: Listed | None) -> bool:
        """Send the start, stop or delete the row owes, and write what came of it."""
        action = row.pending_action
        novita_id = row.novita_instance_id
        assert novita_id is not None
        seen = upstream.status if upstream else None
        try:
            if action == Action.START:
                await self.client.start_instance(novita_id)
            elif action == Action.STOP:
                await self.client.stop_instance(novita_id)
            else:
                await self.client.delete_instance(novita_id)
        except InvalidStateChange:
            done = (action == Action.START and seen in _STARTED) or (action == Action.STOP and seen in _STOPPED)
            if not done:
                # Refused in this state (a stop while the image is still pulling): ask again, backing off.
                return await self.writes.retry_later(row, f"Waiting for Novita to accept the {action} ({seen}).")
        except NotFound:
            return await self.writes.gone_upstream(row)
        except InsufficientResource:

            async def no_capacity(session: AsyncSession, r: Instance) -> None:
                if action == Action.START and self.start_refused is not None and await self.start_refused(session, r):
                    return  # a pool member: its pool moves the claim on, or replaces it (pools/service.py)
                r.pending_action = None
                r.desired_state = Goal.STOPPED
                await self.writes.change(
                    session,
                    r,
                    Status.STOPPED,
                    reason=Reason.NO_CAPACITY,
                    message="Novita has no capacity to start this instance right now.",
                )

            return await self.writes.apply(row, no_capacity) is not None
        except RateLimited as exc:
            return await self.writes.retry_later(row, "Rate limited by Novita; retrying.", exc.retry_after)
        except NovitaError as exc:
            return await self.writes.retry_later(row, f"Novita {action} failed ({exc.reason}); retrying.")

        async def accepted(session: AsyncSession, r: Instance) -> None:
            r.pending_action = None
            r.action_attempts = 0
            r.next_action_at = None

        log.info("reconcile_action_accepted", instance_id=row.id, action=str(action))
        return await self.writes.apply(row, accepted) is not None

    async def overdue(self, row: Instance, upstream: Listed | None) -> bool:
        """A stop or delete not done by its deadline. A stop Novita refuses because the instance never
        finished booting (an endless image pull) becomes a delete, so it cannot bill forever; otherwise the
        record ends `failed` while the action is still retried, backing off, and auto-stop covers it."""
        seen = upstream.status if upstream else "unknown"
        waited = f"{self.settings.action_timeout_seconds:.0f} s"
        if row.status == Status.STOPPING and (upstream is None or phase_of(seen) in (Status.CREATING, Status.STARTING)):

            async def delete_instead(session: AsyncSession, r: Instance) -> None:
                r.desired_state = Goal.TERMINATED
                r.pending_action = Action.DELETE
                r.pending_reason = Reason.STOP_TIMEOUT
                r.action_attempts = 0
                r.next_action_at = None
                r.phase_deadline_at = self.clock.now() + timedelta(seconds=self.settings.action_timeout_seconds)
                message = f"Novita could not stop it within {waited}: it never finished booting ({seen}). Deleting it."
                await self.writes.change(session, r, Status.TERMINATING, reason=Reason.STOP_TIMEOUT, message=message)

            log.warning("instance_stop_overdue_deleting", instance_id=row.id, upstream_status=seen)
            return await self.writes.apply(row, delete_instead) is not None
        reason = Reason.STOP_TIMEOUT if row.status == Status.STOPPING else Reason.DELETE_TIMEOUT
        verb = "stop" if row.status == Status.STOPPING else "delete"
        return await self.writes.fail(
            row,
            reason,
            f"Novita did not {verb} it within {waited} (it says {seen}); still asking, backing off.",
            keep_action=True,
        )

    async def reissue(self, row: Instance, action: Action) -> bool:
        """Novita shows the instance running although we asked otherwise: ask again (level-triggered)."""
        if row.updated_at > self.clock.now() - _SHOWS_WITHIN:
            return False  # give an accepted action time to show in Novita's list

        async def mutate(session: AsyncSession, r: Instance) -> None:
            r.pending_action = action

        return await self.writes.apply(row, mutate) is not None
