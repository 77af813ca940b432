"""The emulated account kept on disk, so the built-in emulator survives restarts and kill -9 as the store does.

A small SQLite file: one row per instance (its attributes, local disk marker and timeline as JSON), one per capacity
that was changed from the seeded catalog, the URL it was last served at (`meta`), and one per other account object (`objects`: private
templates, registry auths, network storages, image prewarm tasks, each a `kind` with its JSON body). Every change of the world writes its rows in one transaction
(WAL, synchronous=NORMAL: a crashed process loses nothing committed). Timelines are absolute times, so
an instance loaded after a restart simply goes on where the clock says it is.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

from novita_gpu.emulator.instance import EmulatedInstance, Phase, PortMapping

_SCHEMA = """
CREATE TABLE IF NOT EXISTS instances (id TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS capacity (
    cluster_id TEXT NOT NULL, product_id TEXT NOT NULL, gpus INTEGER NOT NULL,
    PRIMARY KEY (cluster_id, product_id)
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS objects (
    kind TEXT NOT NULL, id TEXT NOT NULL, body TEXT NOT NULL,
    PRIMARY KEY (kind, id)
);
"""


def _encode(instance: EmulatedInstance) -> str:
    return json.dumps(asdict(instance), separators=(",", ":"))


def _decode(body: str) -> EmulatedInstance:
    fields: dict[str, Any] = json.loads(body)
    fields["ports"] = [PortMapping(**p) for p in fields["ports"]]
    fields["phases"] = [Phase(**p) for p in fields["phases"]]
    return EmulatedInstance(**fields)


class StateFile:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():  # instance env values are secrets: readable by its user only
            path.touch(mode=0o600)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def instances(self) -> list[EmulatedInstance]:
        with self._lock:
            rows = self._db.execute("SELECT body FROM instances ORDER BY rowid").fetchall()
        return [_decode(body) for (body,) in rows]

    def capacities(self) -> dict[tuple[str, str], int]:
        with self._lock:
            rows = self._db.execute("SELECT cluster_id, product_id, gpus FROM capacity").fetchall()
        return {(cluster, product): gpus for cluster, product, gpus in rows}

    def save(self, instance: EmulatedInstance) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO instances (id, body) VALUES (?, ?) ON CONFLICT(id) DO UPDATE SET body = excluded.body",
                (instance.id, _encode(instance)),
            )

    def save_capacity(self, cluster_id: str, product_id: str, gpus: int) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO capacity VALUES (?, ?, ?) "
                "ON CONFLICT(cluster_id, product_id) DO UPDATE SET gpus = excluded.gpus",
                (cluster_id, product_id, gpus),
            )

    def objects(self, kind: str) -> list[dict[str, Any]]:
        """Every object of `kind`, in the order they were first saved."""
        with self._lock:
            rows = self._db.execute("SELECT body FROM objects WHERE kind = ? ORDER BY rowid", (kind,)).fetchall()
        return [json.loads(body) for (body,) in rows]

    def save_object(self, kind: str, object_id: str, body: dict[str, Any]) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO objects (kind, id, body) VALUES (?, ?, ?) "
                "ON CONFLICT(kind, id) DO UPDATE SET body = excluded.body",
                (kind, object_id, json.dumps(body, separators=(",", ":"))),
            )

    def delete_objects(self, kind: str, object_ids: list[str]) -> None:
        """Delete several in one transaction (a batch delete is all or nothing, on disk too)."""
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany("DELETE FROM objects WHERE kind = ? AND id = ?", [(kind, i) for i in object_ids])
            self._db.execute("COMMIT")

    def account(self) -> str:
        """This emulated account's own id, made at its first use: two state files are two accounts."""
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('account', ?)", (uuid.uuid4().hex[:12],))
            (value,) = self._db.execute("SELECT value FROM meta WHERE key = 'account'").fetchone()
        return str(value)

    def served_at(self) -> str | None:
        """The URL the emulator last served this account at: instances' port URLs were built on it."""
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = 'url'").fetchone()
        return None if row is None else str(row[0])

    def record_served_at(self, url: str) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO meta (key, value) VALUES ('url', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (url,),
            )

    def clear(self) -> None:
        with self._lock:
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM instances")
            self._db.execute("DELETE FROM capacity")
            self._db.execute("DELETE FROM objects")
            self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()


def default_state_path(database_url: str) -> Path:
    """Next to a SQLite store (`data/novita-gpu.db` -> `data/novita-gpu.emulator.db`), else `data/`."""
    marker = ":///"
    if database_url.startswith("sqlite") and marker in database_url:
        store = database_url.split(marker, 1)[1].split("?", 1)[0]
        if store and store != ":memory:":
            return Path(store).with_suffix(".emulator.db")
    return Path(os.curdir) / "data" / "emulator.db"
