"""The built-in emulator as `serve` runs it when no NOVITA_API_KEY is set: in the service's process, on a
loopback port, its account kept on disk next to the store.

Every instance's http port URL is built on the emulator's own address, and the store keeps those URLs.
So a restart serves the account again at the address it had (the state file records it); only when
another process has taken that port does the emulator take a free one, and the URLs the store holds are
then moved to the new address before anything reads them.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

import orjson
import structlog
from sqlalchemy import select, update

from novita_gpu.emulator.app import create_emulator_app
from novita_gpu.emulator.config import EmulatorConfig
from novita_gpu.emulator.state_file import StateFile, default_state_path
from novita_gpu.kit.db import Database
from novita_gpu.kit.serving import BackgroundServer, CannotListen
from novita_gpu.kit.settings import Settings
from novita_gpu.kit.tables import Instance

log = structlog.get_logger(__name__)

API_PATH = "/gpu-instance/openapi"


@dataclass
class BuiltinEmulator:
    server: BackgroundServer
    state: StateFile
    previous_url: str | None  # where it was served before this start (None: never)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def api_url(self) -> str:
        return f"{self.server.url}{API_PATH}"

    @property
    def moved_from(self) -> str | None:
        """The URL it was served at before, when this start serves it elsewhere (the stored URLs must follow)."""
        return self.previous_url if self.previous_url not in (None, self.url) else None

    async def stop(self) -> None:
        await self.server.stop()
        self.server.app.state.world.close()


async def start_builtin_emulator(settings: Settings) -> BuiltinEmulator:
    """Start it on EMULATOR_PORT when set, else on the port it had last time, else on a free one."""
    state = StateFile(settings.emulator_state or default_state_path(settings.database_url))
    previous = state.served_at()
    app = create_emulator_app(EmulatorConfig(speed=settings.emulator_speed, seed=settings.emulator_seed), state=state)
    wanted = settings.emulator_port or (urlsplit(previous).port if previous else None) or 0
    server = BackgroundServer(app, port=wanted)
    try:
        await server.start()
    except CannotListen:
        if settings.emulator_port or not wanted:
            raise  # a port the operator chose: say so rather than serve elsewhere
        log.warning("emulator_port_taken", message=f"port {wanted} is taken: the built-in emulator takes a free one")
        server = BackgroundServer(app, port=0)
        await server.start()
    state.record_served_at(server.url)
    return BuiltinEmulator(server, state, previous)


async def move_port_urls(db: Database, old_url: str, new_url: str) -> int:
    """Point every stored URL built on `old_url` at `new_url`; returns how many instances changed."""
    old, new = f"{old_url.rstrip('/')}/", f"{new_url.rstrip('/')}/"
    moved = 0
    async with db.write() as session:
        rows = await session.execute(
            select(Instance.id, Instance.connection_details).where(Instance.connection_details.is_not(None))
        )
        for instance_id, details in rows.all():
            text = orjson.dumps(details).decode()
            if old not in text:
                continue
            await session.execute(
                update(Instance)
                .where(Instance.id == instance_id)
                .values(connection_details=orjson.loads(text.replace(old, new)))
            )
            moved += 1
    if moved:
        log.warning(
            "emulator_moved",
            message=f"the built-in emulator moved from {old_url} to {new_url}: {moved} instances' URLs follow it",
        )
    return moved
