"""`make bench`: every benchmark, one after the other, printing its figures and a JSON summary."""

from __future__ import annotations

import json
import sys
import time

from bench import api_load, chaos, lifecycle


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


def main() -> None:
    only = set(sys.argv[1:])
    results: dict[str, object] = {"machine_speed_seconds": machine_speed()}
    print(f"machine speed: {results['machine_speed_seconds']} s for 10 million Python additions (lower is faster)")
    if not only or "api" in only:
        print("== API load (wrk, one service process, SQLite store with 1,000 instances) ==", flush=True)
        results["api_load"] = api_load.run()
    if not only or "lifecycle" in only:
        print("== Lifecycle: 200 instances at once against the emulator, webhooks to a local receiver ==", flush=True)
        results["lifecycle"] = lifecycle.run()
    if not only or "stream" in only:
        from bench import stream

        print("== Event stream: 500 idle subscribers' cost, then 50 events to each of them ==", flush=True)
        results["stream"] = stream.run()
    if not only or "scale" in only:
        from bench import scale

        print("== Scale: 10,000 instances on one process, then 3 replicas on PostgreSQL ==", flush=True)
        results["scale"] = scale.run()
    if not only or "chaos" in only:
        print("== Chaos: kill -9 every 5-15 s during creates, stops and deletes, under fault storms ==", flush=True)
        results["chaos"] = chaos.run()
    print(json.dumps(results, indent=2))
    failed = [name for name, figures in results.items() if isinstance(figures, dict) and figures.get("ok") is False]
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
