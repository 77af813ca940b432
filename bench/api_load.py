"""API load on one process: 64 connections against a store holding 1,000 instances (wrk as the load).

Targets (issue 3/4): GET /api/instances/{id} >= 1,500 req/s with p99 <= 50 ms; GET /api/instances (first
page of 100) and POST /api/instances p95 <= 50 ms; /health and /metrics p99 <= 20 ms under that load.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import threading
from pathlib import Path
from typing import Any

from bench.common import emulator, ensure_wrk, service, show, wrk
from bench.seed import seed_instances

GET_BY_ID = """
local ids = {}
local pause = %d  -- ms between a response and the next request on a connection (0: as fast as possible)
delay = function() return pause end
init = function(args)
  for line in io.lines("%s") do ids[#ids + 1] = line end
end
request = function()
  return wrk.format("GET", "/api/instances/" .. ids[math.random(#ids)])
end
"""

POST_CREATE = """
local counter = 0
local prefix = "%s"
request = function()
  counter = counter + 1
  local body = '{"name":"' .. prefix .. "-" .. counter .. '","productName":"RTX 4090 24GB","templateId":"pytorch-jupyter"}'
  return wrk.format("POST", "/api/instances", {["Content-Type"] = "application/json"}, body)
end
"""

PLAIN_GET = 'request = function() return wrk.format("GET", "%s") end'

# 60 connections each pausing 25 ms after every answer offer ~1,500-2,000 requests/s: a busy but not
# saturated service. Saturated runs (no pause) measure capacity; there every request waits about one
# pass over the other 63 connections' requests, whatever it is.
PACED_MS = 25


def run(seconds: int = 10) -> dict[str, Any]:
    ensure_wrk()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        ids = asyncio.run(seed_instances(f"sqlite+aiosqlite:///{tmp / 'bench.db'}", 1000))
        ids_file = tmp / "ids.txt"
        ids_file.write_text("\n".join(ids) + "\n")
        by_id = GET_BY_ID % (0, ids_file)
        by_id_paced = GET_BY_ID % (PACED_MS, ids_file)
        first_page = PLAIN_GET % "/api/instances?limit=100"
        # Novita is remote in production: the emulator runs in its own process so that its work does not
        # count against the service's core.
        with (
            emulator(tmp) as emu,
            service(
                tmp, LOG_LEVEL="INFO", NOVITA_API_KEY="bench-key", NOVITA_API_BASE_URL=f"{emu}/gpu-instance/openapi"
            ) as url,
        ):
            wrk(url, script=by_id, connections=16, seconds=2)  # warm-up
            wrk(url, script=first_page, connections=16, seconds=2)

            results["saturated_get_by_id"] = wrk(url, script=by_id, connections=64, seconds=seconds)
            show("saturated  GET /api/instances/{id}      64 conns", results["saturated_get_by_id"])
            results["saturated_list"] = wrk(url, script=first_page, connections=64, seconds=seconds // 2)
            show("saturated  GET /api/instances?limit=100 64 conns", results["saturated_list"])

            side: dict[str, dict[str, float]] = {}
            probes = {"health": PLAIN_GET % "/health", "metrics": PLAIN_GET % "/metrics", "list": first_page}

            def probe(name: str) -> None:
                side[name] = wrk(url, script=probes[name], connections=1, seconds=seconds)

            threads = [threading.Thread(target=probe, args=(name,)) for name in probes]
            for t in threads:
                t.start()
            results["paced_get_by_id"] = wrk(url, script=by_id_paced, connections=60, seconds=seconds)
            for t in threads:
                t.join()
            show(f"paced      GET /api/instances/{{id}}      60 conns, {PACED_MS} ms pause", results["paced_get_by_id"])
            for name in probes:
                results[f"paced_{name}"] = side[name]
                show(f"   beside it: {name:8s} 1 conn", side[name])

            # A lone client first, then 64 at once (each create also sets the reconciler to work).
            results["single_post"] = wrk(url, script=POST_CREATE % "one", connections=1, seconds=3)
            show("one client POST /api/instances            1 conn", results["single_post"])
            results["saturated_post"] = wrk(url, script=POST_CREATE % "sat", connections=64, seconds=3)
            show("saturated  POST /api/instances           64 conns", results["saturated_post"])
    return results


if __name__ == "__main__":  # pragma: no cover
    print(json.dumps(run(), indent=2))
