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

from bench.common import ensure_wrk, service, show, wrk
from bench.seed import seed_instances

GET_BY_ID = """
local ids = {}
init = function(args)
  for line in io.lines("%s") do ids[#ids + 1] = line end
end
request = function()
  return wrk.format("GET", "/api/instances/" .. ids[math.random(#ids)])
end
"""

POST_CREATE = """
local counter = 0

setup = function(thread) thread:set("prefix", "t" .. tostring(math.random(1, 1000000000))) end
request = function()
  counter = counter + 1
  local body = '{"name":"' .. prefix .. "-" .. counter .. '","productName":"RTX 4090 24GB","templateId":"pytorch-jupyter"}'
  return wrk.format("POST", "/api/instances", {["Content-Type"] = "application/json"}, body)
end
"""

PLAIN_GET = 'request = function() return wrk.format("GET", "%s") end'


def run(seconds: int = 10) -> dict[str, Any]:
    ensure_wrk()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        ids = asyncio.run(seed_instances(f"sqlite+aiosqlite:///{tmp / 'bench.db'}", 1000))
        (tmp / "ids.txt").write_text("\n".join(ids) + "\n")
        with service(tmp, LOG_LEVEL="INFO") as url:
            wrk(url, script=GET_BY_ID % (tmp / "ids.txt"), connections=16, seconds=2)  # warm-up
            results["get_by_id"] = wrk(url, script=GET_BY_ID % (tmp / "ids.txt"), connections=64, seconds=seconds)
            show("GET /api/instances/{id}   (64 conns)", results["get_by_id"])
            results["list_first_page"] = wrk(
                url, script=PLAIN_GET % "/api/instances?limit=100", connections=64, seconds=max(3, seconds // 2)
            )
            show("GET /api/instances?limit=100 (64 conns)", results["list_first_page"])

            side: dict[str, dict[str, float]] = {}

            def probe(path: str) -> None:
                side[path] = wrk(url, script=PLAIN_GET % path, connections=2, seconds=seconds)

            threads = [threading.Thread(target=probe, args=(p,)) for p in ("/health", "/metrics")]
            for t in threads:
                t.start()
            results["get_by_id_with_probes"] = wrk(
                url, script=GET_BY_ID % (tmp / "ids.txt"), connections=60, seconds=seconds
            )
            for t in threads:
                t.join()
            results["health_under_load"] = side["/health"]
            results["metrics_under_load"] = side["/metrics"]
            show("GET /health under load    (2 conns)", side["/health"])
            show("GET /metrics under load   (2 conns)", side["/metrics"])
            results["post_create"] = wrk(url, script=POST_CREATE, connections=64, seconds=3)
            show("POST /api/instances        (64 conns)", results["post_create"])
    return results


if __name__ == "__main__":  # pragma: no cover
    print(json.dumps(run(), indent=2))
