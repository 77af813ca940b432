"""`novita-gpu` under tracemalloc: SIGUSR1 writes a snapshot of the live Python allocations.

`python -m bench.traced serve --port 3000` runs the service as `novita-gpu serve` would, with tracemalloc
on (TRACEMALLOC_FRAMES frames per allocation, default 12). Each SIGUSR1 collects garbage and writes
`$TRACEMALLOC_DIR/<pid>-<n>.snap`; `python -m bench.traced --compare A.snap B.snap` prints where the
memory grew between two snapshots, by line and by file. Allocations are 2-3x slower under tracemalloc, so
its figures are sizes, not times. With TRACEMALLOC_FRAMES=0 it runs at full speed and each SIGUSR1 writes
`<pid>-<n>.json` instead: live objects by type, Python's allocated blocks and glibc's heap (in use and
free), which tell objects kept from memory freed but not returned to the system.
"""

from __future__ import annotations

import collections
import ctypes
import gc
import itertools
import json
import os
import signal
import sys
import tempfile
import tracemalloc
from pathlib import Path
from types import FrameType


def _heap() -> dict[str, int]:
    """glibc's mallinfo2: bytes in use and free in the heap and in mmapped chunks."""

    class MallInfo2(ctypes.Structure):
        _fields_ = [
            (name, ctypes.c_size_t)
            for name in (
                "arena",
                "ordblks",
                "smblks",
                "hblks",
                "hblkhd",
                "usmblks",
                "fsmblks",
                "uordblks",
                "fordblks",
                "keepcost",
            )
        ]

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    info = libc.mallinfo2()
    return {"heap": info.arena, "in_use": info.uordblks, "free": info.fordblks, "mmapped": info.hblkhd}


def _pymalloc() -> dict[str, str]:
    """The summary lines of sys._debugmallocstats() (it writes to the C stderr): arenas and their use."""
    with tempfile.TemporaryFile() as out:
        saved = os.dup(2)
        try:
            os.dup2(out.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        out.seek(0)
        lines = out.read().decode(errors="replace").splitlines()
    wanted = (
        "# arenas allocated current",
        "# arenas highwater mark",
        "# bytes in allocated blocks",
        "# bytes in available blocks",
        "unused pools",
        "Total",
    )
    return {ln.split("=")[0].strip(): ln.split("=")[-1].strip() for ln in lines if any(w in ln for w in wanted)}


def _census() -> dict[str, object]:
    counts = collections.Counter(type(o).__name__ for o in gc.get_objects())
    rss = next(ln for ln in Path("/proc/self/status").read_text().splitlines() if ln.startswith("VmRSS:"))
    return {
        "rss_kb": int(rss.split()[1]),
        "allocated_blocks": sys.getallocatedblocks(),
        "malloc": _heap(),
        "pymalloc": _pymalloc(),
        "gc_counts": gc.get_count(),
        "objects": dict(counts.most_common(40)),
    }


def _serve() -> None:
    frames = int(os.environ.get("TRACEMALLOC_FRAMES", "12"))
    if frames:
        tracemalloc.start(frames)
    directory = Path(os.environ.get("TRACEMALLOC_DIR", "."))
    numbers = itertools.count(1)

    def dump(_signum: int, _frame: FrameType | None) -> None:
        gc.collect()
        if not frames:
            path = directory / f"{os.getpid()}-{next(numbers)}.json"
            path.with_suffix(".part").write_text(json.dumps(_census(), indent=1))
            path.with_suffix(".part").rename(path)
            return
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
