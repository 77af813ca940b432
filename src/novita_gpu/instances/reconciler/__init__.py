"""The reconciler: moves every instance row towards its goal, level-triggered, safe to crash anywhere.

One tick claims the rows that need attention (leases, so replicas share them), lists Novita's instances
once (paginated: one call per 100 instances, whatever the number of rows), then per row carries out the
pending action or observes and advances the status. Every write is a guarded apply: it only lands if the
row still has the version and lease this worker read, so a stale worker never overwrites newer intent.

- `worker.py`: the worker: the tick, which rows it takes, and which phase each row is in;
- `attention.py`: the watched rows, which need attention, in which order, and the full pass;
- `new_creates.py`: creates accepted by this process, sent at once, and the backpressure on more;
- `creating.py`: a row without an instance: sending creates, creates in doubt, capacity, adoption;
- `actions.py`: start, stop and delete sent, overdue, and asked again;
- `observing.py`: Novita's listing, and the status moves it shows;
- `ownership.py`: instances under our names that no record wants, deleted;
- `writes.py`: the guarded writes to a row, and the endings the phases share;
- `overdue.py`: what /health reports of the rows.

The claiming, renewing, releasing and slots are the leased-work runner's (kit/runner.py).
"""

from novita_gpu.instances.reconciler.worker import Reconciler, TickResult

__all__ = ["Reconciler", "TickResult"]
