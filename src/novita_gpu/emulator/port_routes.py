"""The instances' own ports: http endpoints answer 502 until the app has booted, 200 while it is up."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from novita_gpu.emulator.api_routes import world_of

router = APIRouter(prefix="/_instances")

METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


@router.get("/{instance_id}/logs/{which}")
async def logs(request: Request, instance_id: str, which: str) -> Response:
    world = world_of(request)
    now = world.now()
    found = world.find(instance_id)
    if found is None or not found.visible_at(now) or which not in ("system", "instance"):
        return PlainTextResponse("404 page not found\n", status_code=404)
    lines = [f"{p.at:.3f} status={p.status}" for p in found.history_at(now)]
    return PlainTextResponse("\n".join(lines) + "\n")


@router.api_route("/{instance_id}/{port}", methods=METHODS)
@router.api_route("/{instance_id}/{port}/{path:path}", methods=METHODS)
async def instance_port(request: Request, instance_id: str, port: int, path: str = "") -> Response:
    world = world_of(request)
    now = world.now()
    found = world.find(instance_id)
    if found is None or not found.visible_at(now) or not any(m.port == port and m.type == "http" for m in found.ports):
        return PlainTextResponse("404 page not found\n", status_code=404)
    status = found.status_at(now)
    if status in ("removing", "removed"):
        return PlainTextResponse("503 Service Unavailable\n", status_code=503)
    if not found.app_up_at(now):
        return PlainTextResponse("502 Bad Gateway\n", status_code=502)
    return JSONResponse(
        {"instanceId": found.id, "port": port, "path": "/" + path, "method": request.method, "status": "ok"}
    )
