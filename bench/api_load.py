"""API load on one process: 64 connections against a store holding 1,000 instances (wrk as the load).

Targets: GET /api/instances/{id} >= 1,500 req/s with p99 <= 50 ms; GET /api/instances (first
page of 100) and POST /api/instances p95 <= 50 ms; /health and /metrics p99 <= 20 ms under that load.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import threading
from pathlib import Path
from typing import Any

import httpx

from bench.common import GET_BY_RANDOM_ID, emulator, ensure_wrk, service, show, wrk
from bench.seed import seed_instances

PAUSE = """
local pause = %d  -- mean ms from an answer to the next request on a connection (0: none at all)
-- Think times vary (uniformly, 0 to twice the mean) as real clients' do: connections pausing in lockstep
-- come back together after any hiccup, and then measure the generator's rhythm more than the service.
delay = function() if pause == 0 then return 0 end return math.random(0, 2 * pause) end
"""

GET_BY_ID = PAUSE + GET_BY_RANDOM_ID

POST_CREATE = """
local counter = 0
local prefix = "%s"
request = function()
  counter = counter + 1
  local body = '{"name":"' .. prefix .. "-" .. counter .. '","productName":"RTX 4090 24GB","templateId":"pytorch-jupyter"}'
  return wrk.format("POST", "/api/instances", {["Content-Type"] = "application/json"}, body)
end
"""

PLAIN_GET = PAUSE + 'request = function() return wrk.format("GET", "%s") end\n'

PACED_POST = PAUSE + POST_CREATE

# The API load: 64 connections at once, each pausing after every answer the way a client does between
# calls. GET by id takes most of them and offers ~1,650 requests/s (the issue asks for >= 1,500); the
# list page (~35/s), creates (~18/s: over a thousand GPU instances a minute) and a monitor polling
# /health and /metrics ten times a second each share the rest. Each kind reports its own latency. This
# is a busy service, not a saturated one; the saturated runs below measure capacity.
MIX: dict[str, tuple[int, int]] = {  # name: (connections, pause in ms after each answer)
    "get_by_id": (58, 30),
    "list": (2, 50),
    "post": (2, 100),
    "health": (1, 100),
    "metrics": (1, 100),
}
assert sum(connections for connections, _ in MIX.values()) == 64


def run(seconds: int = 10) -> dict[str, Any]:
    ensure_wrk()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        ids = asyncio.run(seed_instances(f"sqlite+aiosqlite:///{tmp / 'bench.db'}", 1000))
        ids_file = tmp / "ids.txt"
        ids_file.write_text("\n".join(ids) + "\n")
        scripts = {
            "get_by_id": lambda pause: GET_BY_ID % (pause, ids_file),
            "list": lambda pause: PLAIN_GET % (pause, "/api/instances?limit=100"),
            "post": lambda pause: PACED_POST % (pause, f"mix{pause}"),
            "health": lambda pause: PLAIN_GET % (pause, "/health"),
            "metrics": lambda pause: PLAIN_GET % (pause, "/metrics"),
        }
        # Novita is remote in production: the emulator runs in its own process so that its work does not
        # count against the service's core.
        with (
            emulator(tmp) as emu,
            service(
                tmp, LOG_LEVEL="INFO", NOVITA_API_KEY="bench-key", NOVITA_API_BASE_URL=f"{emu}/gpu-instance/openapi"
            ) as url,
        ):
            # Thousands of creates follow: room for all of them, so that no region sells out (capacity
            # waits and region fallbacks are the lifecycle's business, not this benchmark's).
            for entry in httpx.get(f"{emu}/_emulator/capacity").json()["capacity"]:
                room = {"clusterId": entry["clusterId"], "productId": entry["productId"], "gpus": 100_000}
                httpx.put(f"{emu}/_emulator/capacity", json=room).raise_for_status()
            # Warm-up: the read caches, and Novita's catalog (products, templates) that the first create
            # fetches.
            wrk(url, script=scripts["get_by_id"](0), connections=16, seconds=2)
            wrk(url, script=scripts["list"](0), connections=16, seconds=2)
            warm = {"name": "warm-up", "productName": "RTX 4090 24GB", "templateId": "pytorch-jupyter"}
            httpx.post(f"{url}/api/instances", json=warm, timeout=30).raise_for_status()

            mixed: dict[str, dict[str, float]] = {}

            def load(name: str) -> None:
                connections, pause = MIX[name]
                mixed[name] = wrk(url, script=scripts[name](pause), connections=connections, seconds=seconds)

            httpx.delete(f"{emu}/_emulator/stats")
            threads = [threading.Thread(target=load, args=(name,)) for name in MIX]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            total = sum(figures["rps"] for figures in mixed.values())
            print(f"API load, 64 connections at once: {total:.0f} requests/s in all", flush=True)
            for name, (connections, pause) in MIX.items():
                results[f"mixed_{name}"] = mixed[name]
                show(f"   {name:9s} {connections:2d} conns, {pause:3d} ms pause", mixed[name])
            results["mixed_upstream_calls"] = httpx.get(f"{emu}/_emulator/stats").json()
            show(f"   upstream calls in those {seconds} s", results["mixed_upstream_calls"])

            # Capacity: 64 connections with no pause, one kind of request at a time. There every request
            # waits about one pass over the other 63 connections' requests, whatever it is.
            results["saturated_get_by_id"] = wrk(url, script=scripts["get_by_id"](0), connections=64, seconds=seconds)
            show("saturated  GET /api/instances/{id}      64 conns", results["saturated_get_by_id"])
            results["saturated_list"] = wrk(url, script=scripts["list"](0), connections=64, seconds=seconds // 2)
            show("saturated  GET /api/instances?limit=100 64 conns", results["saturated_list"])
            # Each create also sets the reconciler to work (an upstream create, then the lifecycle).
            results["single_post"] = wrk(url, script=POST_CREATE % "one", connections=1, seconds=3)
            show("one client POST /api/instances            1 conn", results["single_post"])
            results["saturated_post"] = wrk(url, script=POST_CREATE % "sat", connections=64, seconds=3)
            show("saturated  POST /api/instances           64 conns", results["saturated_post"])
    return results


if __name__ == "__main__":  # pragma: no cover
    print(json.dumps(run(), indent=2))
