"""create_app(settings): the FastAPI application and the lifespan that wires its collaborators."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from fastapi import FastAPI

from novita_gpu import __version__
from novita_gpu.settings import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    app = FastAPI(title="Novita GPU control plane", version=__version__)
    started = time.monotonic()

    @app.get("/health")
    async def health() -> dict[str, object]:
        return {
            "status": "healthy",
            "timestamp": datetime.now(UTC).isoformat(),
            "uptime": time.monotonic() - started,
            "version": __version__,
            "mode": settings.mode,
        }

    return app
