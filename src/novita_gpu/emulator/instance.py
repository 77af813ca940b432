"""One emulated instance: its fixed attributes and its timeline of scheduled statuses.

State is never stored as "current": it is a function of the timeline and the time asked about, so
advancing the clock is all it takes to move an instance along.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Statuses in which an instance holds its GPUs (everything but stopped and deleted).
RELEASED = frozenset({"exited", "removed"})
# Entering one of these loses the instance's local disk (the container disk and the volume disk at
# /workspace): only network storage survives a stop on Novita, and a migration moves the instance to another
# node without its local disks ("new data on the system and local disks is lost"): the `migrating` phase a
# migrate schedules wipes the disk through this set. Restart (toRestart, restarting) keeps the container and
# so its disk.
DISK_WIPING = frozenset({"exited", "migrating", "removed"})
# The instance has no disk to write to in these (stopped, being moved to another node, or deleted).
DISKLESS = frozenset({"exited", "migrating", "toRemove", "removing", "removed"})
STATUSES = frozenset(
    {
        "toCreate",
        "creating",
        "pulling",
        "running",
        "toStart",
        "starting",
        "toStop",
        "stopping",
        "exited",
        "toRestart",
        "restarting",
        "toRemove",
        "removing",
        "removed",
        "toReset",
        "resetting",
        "migrating",
        "freezing",
        "pending",
    }
)


@dataclass(frozen=True)
class Phase:
    status: str
    at: float  # unix seconds (emulator clock)
    spot_status: str = ""
    # On a reclaim's `notified` phase: when the reclaim proper (`reclaiming`, the stop) is due, the notice's
    # end, which `spotReclaimTime` shows from the notice on. None on other phases (and in older state files).
    reclaim_at: float | None = None


@dataclass(frozen=True)
class PortMapping:
    port: int
    type: str  # http | tcp
    host_port: int  # for tcp endpoints "127.0.0.1:<host_port>"


@dataclass
class EmulatedInstance:
    id: str
    name: str
    cluster_id: str
    cluster_name: str
    product_id: str
    product_name: str
    kind: str
    gpu_num: int
    cpu_num: int
    memory: int
    rootfs_size: int
    max_rootfs: int
    image_url: str
    image_auth_id: str
    command: str
    entrypoint: str
    ports: list[PortMapping]
    envs: list[dict[str, str]]
    billing_mode: str
    end_time: str
    ssh_password: str
    created_at: float
    phases: list[Phase] = field(default_factory=list)
    app_boots: list[float] = field(default_factory=list)
    gone_at: float | None = None  # when it stops being visible (set once deletion is scheduled)
    visible_from: float = 0.0  # when its (possibly delayed) create completed
    network_storages: list[dict[str, str]] = field(default_factory=list)  # [{id, mountPoint}]
    # The data marker on its local disk (control API), and how many phases had begun when it was written:
    # a disk-wiping phase after those empties it (see disk_at).
    disk: str = ""
    disk_since: int = 0
    # Which node of its cluster it runs on: 0 at create, one more at each migration (control API only).
    node: int = 0

    def phase_at(self, now: float) -> Phase:
        current = self.phases[0]
        for phase in self.phases:
            if phase.at > now:
                break
            current = phase
        return current

    def status_at(self, now: float) -> str:
        return self.phase_at(now).status

    def visible_at(self, now: float) -> bool:
        return self.visible_from <= now and (self.gone_at is None or now < self.gone_at)

    def holds_capacity_at(self, now: float) -> bool:
        return self.visible_at(now) and self.status_at(now) not in RELEASED

    def history_at(self, now: float) -> list[Phase]:
        return [p for p in self.phases if p.at <= now]

    def truncate_after(self, t: float) -> None:
        """Forget what was scheduled after `t` (an action at `t` replaces the planned future)."""
        self.phases = [p for p in self.phases if p.at <= t]
        self.app_boots = [b for b in self.app_boots if b <= t]
        self.gone_at = None

    def disk_at(self, now: float) -> str:
        """The local disk's data marker at `now`: what was last written, unless the instance has entered a
        DISK_WIPING status since. Phases are in time order and an action only drops phases after its own
        time, so the first `disk_since` phases (those begun by the write) never change."""
        if not self.disk:
            return ""
        since_write = (p for p in self.phases[self.disk_since :] if p.at <= now)
        return "" if any(p.status in DISK_WIPING for p in since_write) else self.disk

    def write_disk(self, data: str, now: float) -> None:
        self.disk = data
        self.disk_since = len(self.history_at(now))

    def running_since(self, now: float) -> float | None:
        """Start of the current uninterrupted `running` stretch, or None if not running."""
        since: float | None = None
        for phase in self.history_at(now):
            running = phase.status == "running"
            since = (since if since is not None else phase.at) if running else None
        return since

    def app_up_at(self, now: float) -> bool:
        since = self.running_since(now)
        return since is not None and any(since <= b <= now for b in self.app_boots)

    def last_entered(self, status: str, now: float) -> float | None:
        """When the instance last entered `status` (a new stretch, not a spot sub-phase), up to `now`."""
        last: float | None = None
        previous = ""
        for phase in self.history_at(now):
            if phase.status == status and previous != status:
                last = phase.at
            previous = phase.status
        return last

    def last_app_boot(self, now: float) -> float | None:
        return max((b for b in self.app_boots if b <= now), default=None)

    def spot_reclaim_time(self, now: float) -> float | None:
        """When the latest reclaim takes (or took) the instance: the end of its notice, shown from the
        notice on, until the instance runs normally again (a start or a migration)."""
        due: float | None = None
        for phase in self.history_at(now):
            if phase.spot_status == "notified" and due is None:
                due = phase.reclaim_at if phase.reclaim_at is not None else phase.at
            elif phase.spot_status == "running":
                due = None
        return due
