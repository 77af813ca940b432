"""The API's words that the client and the service share: an instance's statuses and what a name may be.

The service imports these (novita_gpu.instances.lifecycle re-exports `Status`), so the client can never
wait for a status the service does not have.
"""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    CREATING = "creating"
    RECOVERING = "recovering"  # a reclaimed spot instance coming back (migrated or recreated)
    STARTING = "starting"
    RUNNING = "running"
    HEALTH_CHECKING = "health_checking"
    READY = "ready"
    STOPPING = "stopping"
    STOPPED = "stopped"
    TERMINATING = "terminating"
    TERMINATED = "terminated"
    FAILED = "failed"


# An instance's name: what the service accepts (the API refuses anything else with VALIDATION_ERROR).
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$"
