"""create_emulator_app(): the Novita v1 API emulator as a FastAPI app (state in `app.state.world`)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from novita_gpu.emulator import account_routes, api_routes, control_routes, metrics_routes, port_routes
from novita_gpu.emulator.config import EmulatorConfig
from novita_gpu.emulator.errors import EmulatedError, envelope
from novita_gpu.emulator.gateway import gate
from novita_gpu.emulator.state_file import StateFile
from novita_gpu.emulator.world import World
from novita_gpu.kit.clock import Clock

_REASONS = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}


class EmulatorApp(FastAPI):
    """FastAPI with Novita's gateway in front (see gateway.py for why it sits outside the middleware)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        serve_with = await gate(self.state.world, scope, receive, send)
        if serve_with is not None:
            await super().__call__(scope, receive, serve_with)


def create_emulator_app(
    config: EmulatorConfig | None = None, clock: Clock | None = None, state: StateFile | None = None
) -> FastAPI:
    """`state`: keep the emulated account in this file (it survives restarts); None: in memory only."""
    config = config or EmulatorConfig()
    app = EmulatorApp(title="Novita API emulator", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.world = World(config, clock, state)
    app.include_router(api_routes.router)
    app.include_router(account_routes.router)
    app.include_router(metrics_routes.router)
    app.include_router(control_routes.router)
    app.include_router(port_routes.router)
    _install_error_handlers(app)
    return app


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(EmulatedError)
    async def _novita(_: Request, exc: EmulatedError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("path", "query", "body"))
        return envelope(400, "VALIDATOR_PARAM", f"{where}: {first.get('msg', 'invalid')}")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        reason = _REASONS.get(exc.status_code, "UNKNOWN")
        return envelope(exc.status_code, reason, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        return envelope(500, "UNKNOWN", "unknown error")
