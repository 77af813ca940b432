"""The store: async engine, sessions, SQLite pragmas, Alembic migrations applied at start-up, and what
`novita-gpu db` needs (the store's revision, an online SQLite backup).

SQLite (the default) allows one writer at a time; `Database.write()` serialises this process's write
transactions behind an asyncio lock and opens them with BEGIN IMMEDIATE, so concurrent requests queue
instead of failing with "database is locked". SQLite calls run inline (see sqlite_inline.py). On
PostgreSQL `write()` is a plain transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import weakref
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar, cast
from urllib.parse import quote

import structlog
from sqlalchemy import DateTime, Executable, Row, Select, Table, event
from sqlalchemy.engine import URL, Connection, Dialect, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

from novita_gpu.kit.sqlite_inline import inline_creator

_Select = TypeVar("_Select", bound=Select[Any])

log = structlog.get_logger(__name__)


class Base(DeclarativeBase):
    pass


def table_of(model: type[Base]) -> Table:
    """The Core table of a mapped class, for statements that skip the ORM's unit of work."""
    return cast(Table, model.__table__)


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps are stored as naive UTC and always come back timezone-aware."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite store URL (as normalised by the settings), None for anything else."""
    prefix = "sqlite+aiosqlite:///"
    if not url.startswith(prefix):
        return None
    path = url[len(prefix) :].split("?", 1)[0]
    return None if path in ("", ":memory:") else Path(path)


_warned_readable: set[Path] = set()


def _private_sqlite_file(path: Path) -> None:
    """Create the store readable by this user only: it holds instance env values (secrets). SQLite gives
    its -wal and -shm files the database file's permissions. An existing store is left as it is, with a
    warning when others may read it."""
    if path.exists():
        if path.stat().st_mode & 0o077 and path not in _warned_readable:
            _warned_readable.add(path)  # once: `serve` opens the store twice (migrate_store, then the app)
            log.warning("database_file_readable_by_others", path=str(path), hint=f"chmod 600 {path}")
        return
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))


class Database:
    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        kwargs: dict[str, Any] = {}
        if self.is_sqlite:
            path = sqlite_file(url)
            if path is None:
                raise ValueError("DATABASE_URL must name a SQLite file, e.g. sqlite+aiosqlite:///./data/novita-gpu.db")
            _private_sqlite_file(path)
            kwargs.update(
                async_creator=inline_creator(str(path), busy_timeout_seconds=5.0), pool_size=4, max_overflow=4
            )
        else:
            kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        if self.is_sqlite:
            _install_sqlite_pragmas(self.engine)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False, autoflush=False)
        self._sqlite_path = str(sqlite_file(url)) if self.is_sqlite else ""

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        if not self.is_sqlite:
            async with self.sessions() as session:
                yield session
            return
        session = self.sessions()
        try:
            yield session
        finally:
            await _close_inline(session)

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A write transaction: committed on success, rolled back on error."""
        if not self.is_sqlite:
            async with self.sessions() as session, session.begin():
                yield session
            return
        async with _sqlite_write_lock(self._sqlite_path):
            session = self.sessions()
            try:
                async with session.begin():
                    await session.connection(execution_options={"sqlite_immediate": True})
                    yield session
            finally:
                await _close_inline(session)

    @contextlib.asynccontextmanager
    async def worker_write(self) -> AsyncIterator[AsyncSession]:
        """A write transaction for a background worker's per-row write. Workers take turns: at most
        WORKER_WRITES_PER_PASS such writes run per pass of the event loop. SQLite runs inline, without
        yielding, so a worker moving 150 rows in a row would otherwise hold the loop for the whole
        batch, and every API request would wait behind it. Request handlers use `write()`, no turn."""
        async with _worker_turns(asyncio.get_running_loop()):
            await asyncio.sleep(0)
            async with self.write() as session:
                yield session

    def locked(self, query: _Select) -> _Select:
        """`query` locking the rows it reads until the transaction ends (FOR UPDATE) on PostgreSQL, where
        another replica may write them meanwhile; as is on SQLite, whose write transaction already holds the
        file's one write lock (and which has no FOR UPDATE)."""
        return query.with_for_update() if self.locks_rows else query

    @property
    def locks_rows(self) -> bool:
        """Whether a write locks the rows it reads (PostgreSQL: FOR UPDATE); `session.get(...,
        with_for_update=db.locks_rows)` is `locked()` for a look-up by primary key."""
        return not self.is_sqlite

    async def fetch(self, query: Executable, parameters: Mapping[str, Any] | None = None) -> Sequence[Row[Any]]:
        """The rows of one read statement, on a plain connection: /health and /metrics run these on
        every call, and an ORM session's set-up and teardown cost more than the query itself.

        Pass bound values as `parameters`, not with `query.params(...)`: that copies the whole statement
        on every call, where values given at execution cost nothing."""
        conn = await self.engine.connect()
        try:
            return (await conn.execute(query, parameters)).all()
        finally:
            await conn.close()  # directly: `async with` closes in a shielded task, a loop pass later

    async def migrate(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Bring the schema to head in one transaction (under a lock on PostgreSQL, so replicas may start
        together); raises `StoreTooNew` naming this store if a newer version migrated it. Returns the
        store's revisions before and after, read under that lock: of replicas upgrading together, only
        the one that migrated sees a change."""
        from alembic.runtime.migration import MigrationContext

        from novita_gpu.kit.migrations import StoreTooNew, lock_for_migration, upgrade_to_head

        def upgrade(conn: Connection) -> tuple[tuple[str, ...], tuple[str, ...]]:
            lock_for_migration(conn)  # first (upgrade_to_head takes it again: it is re-entrant)
            before = MigrationContext.configure(conn).get_current_heads()
            upgrade_to_head(conn)
            return tuple(before), tuple(MigrationContext.configure(conn).get_current_heads())

        try:
            async with self.engine.begin() as conn:
                return await conn.run_sync(upgrade)
        except StoreTooNew as exc:
            raise StoreTooNew(exc.revisions, f"the store at {display_url(self.url)}") from None

    async def dispose(self) -> None:
        await self.engine.dispose()


def display_url(url: str) -> str:
    """A database URL without its password, for messages."""
    return make_url(url).render_as_string(hide_password=True)


def describe_store(url: str) -> str:
    """The store for a log line: `sqlite:<path>`, or `postgresql://user@host:port/db` (no password, no
    query: either may hold a secret)."""
    if sqlite_file(url) is not None:
        return "sqlite:" + url.split(":///", 1)[1].split("?", 1)[0]  # as written: ./data stays ./data
    parsed = make_url(url)
    return URL.create(
        parsed.get_backend_name(), parsed.username, None, parsed.host, parsed.port, parsed.database
    ).render_as_string()


@dataclass(frozen=True)
class StoreRevision:
    """Where a store's schema is against the migrations this code has."""

    current: tuple[str, ...]  # empty: no schema yet
    head: str
    known: bool  # False: a newer novita-gpu migrated it

    @property
    def up_to_date(self) -> bool:
        return self.current == (self.head,)


async def store_revision(url: str) -> StoreRevision:
    """Read the store's Alembic revision without changing anything."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from novita_gpu.kit.migrations import alembic_config

    scripts = ScriptDirectory.from_config(alembic_config())
    known = {script.revision for script in scripts.walk_revisions()}
    db = Database(url)
    try:
        async with db.engine.connect() as conn:
            current = await conn.run_sync(lambda sync: MigrationContext.configure(sync).get_current_heads())
    finally:
        await db.dispose()
    head = scripts.get_current_head()
    assert head is not None
    return StoreRevision(tuple(current), head, all(revision in known for revision in current))


def backup_sqlite(source: Path, target: Path) -> None:
    """Copy the store at `source` to `target` with SQLite's online backup API, while the service may be
    writing: the copy is done in one step, inside one read transaction, so it is one consistent snapshot,
    and WAL lets writers go on meanwhile. It is written beside `target` as a single file (no -wal),
    checked, then renamed over `target`, so a failed backup never leaves a partial file under that name.
    The copy holds instance env values (secrets): readable by its user only, like the store."""
    if not source.is_file():
        raise FileNotFoundError(f"no SQLite store at {source}")
    if not target.parent.is_dir():
        raise FileNotFoundError(f"no directory {target.parent}")
    if target.exists() and target.resolve() == source.resolve():
        raise ValueError("the backup would overwrite the store itself")
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    os.close(os.open(partial, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    try:
        source_uri = f"file:{quote(str(source))}?mode=rw"  # rw: never create a store that is not there
        with (
            contextlib.closing(sqlite3.connect(source_uri, uri=True, timeout=30)) as src,
            contextlib.closing(sqlite3.connect(partial)) as dst,
        ):
            src.backup(dst)  # pages=-1: the whole database in one step
            dst.execute("PRAGMA journal_mode=DELETE")
            (check,) = dst.execute("PRAGMA quick_check").fetchone()
            if check != "ok":
                raise sqlite3.DatabaseError(f"the copy failed its integrity check: {check}")
        with open(partial, "rb") as copy:
            os.fsync(copy.fileno())
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    directory = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself survives a crash
    finally:
        os.close(directory)


async def migrate_store(url: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Migrate the store at `url` with an engine of its own: `serve` does this before it listens, so a
    store it must refuse (`StoreTooNew`) stops it with a message instead of a failed start-up. Returns
    the revisions before and after (see `Database.migrate`)."""
    db = Database(url)
    try:
        return await db.migrate()
    finally:
        await db.dispose()


async def _close_inline(session: AsyncSession) -> None:
    """Close a SQLite session directly: `async with session` closes it in a new, shielded task, which
    costs a pass of the event loop per request, and under load each pass waits behind every other
    ready request. SQLite calls run inline (nothing to cancel mid-way), so no shield is needed."""
    await session.close()


_write_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)


def _sqlite_write_lock(path: str) -> asyncio.Lock:
    """One writer at a time per SQLite file in this process, however many engines point at it: a second
    writer must queue here, not block the event loop inside SQLite's busy wait."""
    locks = _write_locks.setdefault(asyncio.get_running_loop(), {})
    return locks.setdefault(path, asyncio.Lock())


# A worker write holds the loop ~0.2-0.5 ms, so 16 hold it a few ms per pass. With 4, a burst of creates
# (32 clients, each pass full of their requests) left the workers 4 writes per long pass: upstream creates
# ran at half the accepted rate (docs/performance.md).
WORKER_WRITES_PER_PASS = 16
_worker_turn_semaphores: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary()
)


def _worker_turns(loop: asyncio.AbstractEventLoop) -> asyncio.Semaphore:
    return _worker_turn_semaphores.setdefault(loop, asyncio.Semaphore(WORKER_WRITES_PER_PASS))


def _install_sqlite_pragmas(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=5000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Writes take the lock up front; reads run in autocommit (one statement, one snapshot), which
        # saves a round trip to the driver's thread per request.
        if conn.get_execution_options().get("sqlite_immediate"):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
