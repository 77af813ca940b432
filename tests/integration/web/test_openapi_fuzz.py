"""schemathesis (`--checks all`) against the service: no server error, no answer outside the document,
no request the document allows refused as malformed, no request it forbids accepted.

The harness's app answers on a loopback port in this process (emulator on a ManualClock, workers off),
on SQLite and on PostgreSQL; schemathesis runs as its CLI, the documented way to run every check,
bounded by a fixed seed and a few examples per operation. Its report is the assertion message.
Long-polls end on the harness's clock, which moves while the run lasts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.databases import fresh_database
from tests.fixtures.live_service import live_service
from tests.harness import SEED_BODY

HOOKS = Path(__file__).with_name("openapi_fuzz_hooks.py")
# Per operation and phase: ~900 requests in ~6 s. A deeper run: OPENAPI_FUZZ_EXAMPLES=200 OPENAPI_FUZZ_SEED=...
MAX_EXAMPLES = int(os.environ.get("OPENAPI_FUZZ_EXAMPLES", "8"))
SEED = int(os.environ.get("OPENAPI_FUZZ_SEED", "17"))
WALL_SECONDS = 90 + MAX_EXAMPLES  # a hung run is killed and fails with what it printed


def config(instances: list[dict[str, Any]]) -> str:
    """schemathesis.toml: real instance ids, names, products and templates in half the requests that take
    one, so the run reaches existing instances (their answers, actions and long-polls), not only 404s."""
    dictionaries = {
        "ids": [i["instanceId"] for i in instances],
        "names": [i["name"] for i in instances],
        "products": [SEED_BODY["productName"]],
        "templates": [SEED_BODY["templateId"]],
    }
    bindings = {
        "path.instance_id": "ids",
        "body.instanceName": "names",
        "body.productName": "products",
        "body.templateId": "templates",
    }
    lines = [f"[dictionaries.{name}]\nvalues = {json.dumps(values)}" for name, values in dictionaries.items()]
    lines.append("[parameters]")
    lines += [f'"{key}" = {{ dictionary = "{name}", probability = 0.5 }}' for key, name in bindings.items()]
    # The event streams end after what is stored only when not followed; a followed one never ends, and
    # schemathesis waits for a whole answer.
    lines.append('"query.follow" = false')
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
async def test_schemathesis_checks_all_find_nothing(tmp_path: Path, store: str) -> None:
    async with fresh_database(store, tmp_path) as url, live_service(tmp_path, database_url=url) as service:
        instances = [await service.harness.create() for _ in range(3)]
        await service.harness.until_status(instances[0]["instanceId"], "ready")
        (tmp_path / "schemathesis.toml").write_text(config(instances))
        command = [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "--config-file=schemathesis.toml",
            "run",
            f"{service.url}/openapi.json",
            "--checks=all",
            f"--max-examples={MAX_EXAMPLES}",
            f"--seed={SEED}",
            "--workers=1",
            "--generation-database=none",
            "--request-timeout=20",
            "--no-color",
            *shlex.split(os.environ.get("OPENAPI_FUZZ_ARGS", "")),  # e.g. --include-path-regex=/api/cache
        ]
        process = await asyncio.create_subprocess_exec(
            *command,
            cwd=tmp_path,  # its reports and caches stay out of the repository
            env={**os.environ, "SCHEMATHESIS_HOOKS": str(HOOKS)},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        finished = asyncio.ensure_future(process.communicate())
        deadline = asyncio.get_running_loop().time() + WALL_SECONDS
        while not finished.done() and asyncio.get_running_loop().time() < deadline:
            await asyncio.wait({finished}, timeout=0.05)
            service.harness.clock.advance(5)  # long-polls reach their deadlines
        if not finished.done():
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        output, _ = await finished
    report = output.decode(errors="replace")
    if os.environ.get("OPENAPI_FUZZ_SHOW"):
        print(report)
    assert process.returncode == 0, "\n".join(line[:400] for line in report.splitlines())
