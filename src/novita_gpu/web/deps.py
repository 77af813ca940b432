"""Typed access to the app's collaborators from a request (set up by create_app's lifespan)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request

if TYPE_CHECKING:
    from novita_gpu.services import Services


async def services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


ServicesDep = Annotated["Services", Depends(services)]
