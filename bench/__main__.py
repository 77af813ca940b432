"""`make bench`: every benchmark, one after the other, printing its figures and a JSON summary."""

from __future__ import annotations

import importlib
import json
import sys
import time


def machine_speed() -> float:
    """Seconds this machine's Python takes for a fixed loop of 10 million additions (best of three).

    Figures here are from one core of whatever machine runs them; machines this project met differ by
    2-3x on this loop, and the service's figures move with it."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        total = 0
        for i in range(10_000_000):
            total += i
        best = min(best, time.perf_counter() - started)
    return round(best, 2)


# Run in this order; a name on the command line (`python -m bench api scale`) runs only those.
BENCHMARKS: tuple[tuple[str, str, str], ...] = (  # (name, module in bench/, what it measures)
    ("api", "api_load", "API load (wrk, one service process, SQLite store with 1,000 instances)"),
    ("lifecycle", "lifecycle", "Lifecycle: 200 instances at once against the emulator, webhooks to a local receiver"),
    ("stream", "stream", "Event stream: 500 idle subscribers' cost, then 50 events to each of them"),
    ("scale", "scale", "Scale: 10,000 instances on one process, then 3 replicas on PostgreSQL"),
    ("chaos", "chaos", "Chaos: kill -9 every 5-15 s during creates, stops and deletes, under fault storms"),
    ("spot", "spot", "Spot: 100 spot instances, 50 reclaimed within 10 s, kill -9 during the recoveries"),
    ("pools", "pools", "Warm pools: request to ready, cold, claimed from stopped or ready, prewarmed"),
)


def main() -> None:
    only = set(sys.argv[1:])
    results: dict[str, object] = {"machine_speed_seconds": machine_speed()}
    print(f"machine speed: {results['machine_speed_seconds']} s for 10 million Python additions (lower is faster)")
    for name, module, title in BENCHMARKS:
        if only and name not in only:
            continue
        print(f"== {title} ==", flush=True)
        results[module] = importlib.import_module(f"bench.{module}").run()
    print(json.dumps(results, indent=2))
    failed = [name for name, figures in results.items() if isinstance(figures, dict) and figures.get("ok") is False]
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
