"""`make bench`: every benchmark, one after the other, printing its figures and a JSON summary."""

from __future__ import annotations

import json
import sys

from bench import api_load, lifecycle


def main() -> None:
    only = set(sys.argv[1:])
    results = {}
    if not only or "api" in only:
        print("== API load (wrk, one service process, SQLite store with 1,000 instances) ==", flush=True)
        results["api_load"] = api_load.run()
    if not only or "lifecycle" in only:
        print("== Lifecycle: 200 instances at once against the emulator, webhooks to a local receiver ==", flush=True)
        results["lifecycle"] = lifecycle.run()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
