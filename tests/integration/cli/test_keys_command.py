"""`novita-gpu keys` on the server: the first key made right in the store works over HTTP at once, is
listed without its secret, and once revoked there is refused (docs/teams.md)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from typer.testing import CliRunner, Result

from novita_gpu.cli.keys import app
from tests.harness import Harness


def keys(url: str, *args: str) -> Result:
    # In a thread: each command runs its own event loop (asyncio.run), as from a shell.
    return CliRunner().invoke(app, list(args), env={"DATABASE_URL": url, "LOG_LEVEL": "WARNING"})


async def test_the_first_key_made_on_the_server_works_and_its_revoke_is_refused(tmp_path: Path) -> None:
    async with Harness(tmp_path) as h:
        url = h.database_url
        assert (await h.http.get("/api/me")).json()["role"] == "owner"  # no key anywhere: open, on loopback
        made = await asyncio.to_thread(
            keys, url, "create", "--team", "ml", "--role", "admin", "--name", "alice", "--json"
        )
        assert made.exit_code == 0, made.output
        key = json.loads(made.output)
        assert key["secret"].startswith("ngk_") and key["teamName"] == "ml" and key["role"] == "admin"
        h.services.keys.forget()  # (another process made it: this one learns within a second)

        assert (await h.http.get("/api/me")).status_code == 401  # a key exists now: every request needs one
        me = await h.http.get("/api/me", headers={"Authorization": f"Bearer {key['secret']}"})
        assert me.status_code == 200 and me.json()["keyName"] == "alice", me.text

        listed = await asyncio.to_thread(keys, url, "list")
        assert listed.exit_code == 0 and key["id"] in listed.output and key["secret"] not in listed.output
        revoked = await asyncio.to_thread(keys, url, "revoke", key["id"])
        assert revoked.exit_code == 0, revoked.output
        h.services.keys.forget()
        refused = await h.http.get("/api/me", headers={"Authorization": f"Bearer {key['secret']}"})
        assert refused.status_code == 401
        bad = await asyncio.to_thread(keys, url, "create", "--team", "ml", "--role", "boss", "--name", "x")
        assert bad.exit_code == 2 and "--role must be one of" in bad.output
