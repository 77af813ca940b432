"""`novita-gpu` under tracemalloc: SIGUSR1 writes a snapshot of the live Python allocations.

`python -m bench.traced serve --port 3000` runs the service as `novita-gpu serve` would, with tracemalloc
on (TRACEMALLOC_FRAMES frames per allocation, default 12). Each SIGUSR1 collects garbage and writes
`$TRACEMALLOC_DIR/<pid>-<n>.snap`; `python -m bench.traced --compare A.snap B.snap` prints where the
memory grew between two snapshots, by line and by file. Allocations are 2-3x slower under tracemalloc, so
its figures are sizes, not times.
"""

from __future__ import annotations

import gc
import itertools
import os
import signal
import sys
import tracemalloc
from pathlib import Path
from types import FrameType


def _serve() -> None:
    tracemalloc.start(int(os.environ.get("TRACEMALLOC_FRAMES", "12")))
    directory = Path(os.environ.get("TRACEMALLOC_DIR", "."))
    numbers = itertools.count(1)

    def dump(_signum: int, _frame: FrameType | None) -> None:
        gc.collect()
        path = directory / f"{os.getpid()}-{next(numbers)}.snap"
        tracemalloc.take_snapshot().dump(str(path.with_suffix(".part")))
        path.with_suffix(".part").rename(path)

    signal.signal(signal.SIGUSR1, dump)
    from novita_gpu.cli import app

    sys.argv = ["novita-gpu", *sys.argv[1:]]
    app()


def compare(before: str, after: str, top: int = 25) -> None:
    old = tracemalloc.Snapshot.load(before)
    new = tracemalloc.Snapshot.load(after)
    keep = [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<frozen importlib._bootstrap>")]
    old, new = old.filter_traces(keep), new.filter_traces(keep)
    total = sum(s.size for s in new.statistics("filename")) - sum(s.size for s in old.statistics("filename"))
    print(f"grew by {total / 1e6:.1f} MB of live Python allocations")
    for key in ("filename", "lineno", "traceback"):
        print(f"-- by {key}")
        for stat in new.compare_to(old, key)[: top if key != "traceback" else 8]:
            print(
                f"{stat.size_diff / 1e6:+8.2f} MB {stat.count_diff:+8d} blocks  {stat.traceback.format()[-1].strip()}"
            )
            if key == "traceback":
                for line in stat.traceback.format()[-2 * 12 :]:
                    print("        " + line)


if __name__ == "__main__":  # pragma: no cover
    if sys.argv[1:2] == ["--compare"]:
        compare(sys.argv[2], sys.argv[3])
    else:
        _serve()
