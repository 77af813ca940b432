"""Waiting for a status with repeated long-polls under one overall deadline (shared by both clients)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from novita_gpu_client import calls
from novita_gpu_client.calls import Call, Json
from novita_gpu_client.errors import InstanceFailed, InstanceStopped, WaitTimeout
from novita_gpu_client.vocabulary import Status

# Where an instance can end up instead of the wanted status (the server's long-poll returns on these too).
DEAD_ENDS = frozenset({"failed", "terminated"})
# Where it rests until someone acts: a stopped instance moves only when it is started or deleted.
AT_REST = "stopped"
# Every public status: waiting for "any but the current one" returns on the next change.
STATUSES = frozenset(status.value for status in Status)
# The most the server holds one long-poll (`timeout` of GET /api/instances/{id} is at most 60).
MAX_POLL_SECONDS = 60.0


class Wait:
    """One wait: `next_call()` is the next long-poll; `outcome(view)` says whether the wait is over."""

    def __init__(
        self,
        instance_id: str,
        status: str | Iterable[str],
        timeout: float,
        poll_timeout: float,
        on_change: Callable[[Json], None] | None = None,
    ) -> None:
        """`on_change(view)` is called with the first view and each change of status until the wait ends
        (then each long-poll returns on any change, not only on a wanted status)."""
        self.instance_id = instance_id
        self.wanted = frozenset([status] if isinstance(status, str) else status)
        self.timeout = timeout
        self.poll_timeout = poll_timeout
        self.deadline = time.monotonic() + timeout
        self.on_change = on_change
        self.seen: str | None = None
        self.looked = False

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def next_call(self) -> Call:
        """The first call answers at once (any status will do), so a wait that cannot end well ends then;
        later ones return on a wanted status, on any change when someone hears of changes, and on
        `stopped` (besides the dead ends the server always returns on)."""
        if not self.looked:
            wanted = STATUSES | self.wanted  # the wanted ones too: the server says if one is no status
        elif self.on_change is not None:
            wanted = STATUSES - {self.seen} if self.seen else STATUSES
        else:
            wanted = self.wanted | {AT_REST}
        return calls.wait(self.instance_id, wanted, min(self.poll_timeout, MAX_POLL_SECONDS, self.remaining()))

    def outcome(self, view: Json) -> Json | None:
        """The view when it has a wanted status; None to poll again. Raises `InstanceFailed` on a dead end,
        `InstanceStopped` when it is stopped (it stays so until someone starts it) and `WaitTimeout` once
        the deadline has passed."""
        self.looked = True
        status = view.get("status")
        if self.on_change is not None and status != self.seen:
            self.seen = status
            self.on_change(view)
        if status in self.wanted:
            return view
        if status in DEAD_ENDS:
            raise InstanceFailed(view, self.wanted)
        if status == AT_REST:
            raise InstanceStopped(view, self.wanted)
        if self.remaining() <= 0:
            raise WaitTimeout(view, self.wanted, self.timeout)
        return None
