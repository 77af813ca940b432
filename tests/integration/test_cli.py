"""The `novita-gpu` client commands against the real service and emulator over loopback HTTP.

Each command runs through typer's CliRunner in a worker thread, while the test loop serves the API and
drives the lifecycle. One service serves the module; tests that need other settings start their own.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from typer.testing import CliRunner, Result

from novita_gpu.cli import app
from novita_gpu.serving import free_port
from tests.fixtures.live_service import LiveService, live_service

PRODUCT, TEMPLATE = "RTX 4090 24GB", "pytorch-jupyter"
API_KEY = "sk-cli-test-key-0123456789"

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def live(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LiveService]:
    async with live_service(tmp_path_factory.mktemp("cli")) as service:
        yield service


def invoke(url: str, *args: str, api_key: str | None = None) -> Result:
    """One `novita-gpu` run (blocking). The URL and key come from the environment, as a user sets them."""
    env = {"NOVITA_GPU_URL": url, "NOVITA_GPU_API_KEY": api_key}
    return CliRunner().invoke(app, list(args), env=env)


async def cli(live: LiveService, *args: str, api_key: str | None = None) -> Result:
    return await asyncio.to_thread(invoke, live.url, *args, api_key=api_key)


def ok(result: Result) -> str:
    assert result.exit_code == 0, (result.exit_code, result.stdout, result.stderr)
    assert result.stderr == ""
    return result.stdout


async def test_create_and_wait_then_get_list_and_wait(live: LiveService) -> None:
    create = ["instances", "create", "--name", "cli-one", "--product", PRODUCT, "--template", TEMPLATE]
    result = await live.while_driving(
        lambda: invoke(live.url, *create, "--auto-stop-minutes", "20", "--wait", "--timeout", "60", "--json")
    )
    ready = json.loads(ok(result))
    instance_id = ready["instanceId"]
    assert ready["status"] == "ready" and ready["autoStop"]["idleMinutes"] == 20

    by_name = ok(await cli(live, "instances", "get", "cli-one"))
    assert instance_id in by_name and re.search(r"status\s+ready", by_name)
    assert json.loads(ok(await cli(live, "instances", "get", instance_id, "--json")))["name"] == "cli-one"

    listed = ok(await cli(live, "instances", "list"))
    assert re.search(rf"{instance_id}\s+cli-one\s+ready", listed)
    only_ready = json.loads(ok(await cli(live, "instances", "list", "--status", "ready", "--json")))
    assert instance_id in [i["instanceId"] for i in only_ready] and {i["status"] for i in only_ready} == {"ready"}
    assert json.loads(ok(await cli(live, "instances", "list", "--name", "nobody", "--json"))) == []
    assert ok(await cli(live, "instances", "list", "--name", "nobody")) == "No instances.\n"

    waited = ok(await cli(live, "instances", "wait", instance_id, "--for", "ready,stopped", "--timeout", "5", "--json"))
    assert json.loads(waited)["status"] == "ready"


async def test_stop_start_touch_events_and_delete(live: LiveService) -> None:
    h = live.harness
    instance_id = (await h.create(name="cli-act"))["instanceId"]
    await h.until_status(instance_id, "ready")

    stop = ok(await cli(live, "instances", "stop", "--name", "cli-act"))
    assert stop == f"{instance_id} (cli-act): stopping: Instance stop initiated.\n"
    await h.until_status(instance_id, "stopped")
    assert json.loads(ok(await cli(live, "instances", "start", instance_id, "--json")))["status"] == "starting"
    await h.until_status(instance_id, "ready")

    assert "auto-stop at" in ok(await cli(live, "instances", "touch", instance_id))
    events = ok(await cli(live, "instances", "events", instance_id))
    assert re.search(r"\d\dZ\s+health_checking\s+", events) and re.search(r"\d\dZ\s+stopped\s+USER", events)
    history = json.loads(ok(await cli(live, "instances", "events", instance_id, "--json")))["events"]
    assert [e["to"] for e in history].count("ready") == 2

    assert "terminating" in ok(await cli(live, "instances", "delete", instance_id))
    await h.until_status(instance_id, "terminated")
    gone = await cli(live, "instances", "wait", instance_id, "--timeout", "5")
    assert gone.exit_code == 1 and gone.stderr == f"error: instance {instance_id} is terminated (USER), not ready\n"


async def test_wait_times_out_with_exit_code_1(live: LiveService) -> None:
    created = json.loads(
        ok(
            await cli(
                live,
                "instances",
                "create",
                "--name",
                "cli-slow",
                "--product",
                PRODUCT,
                "--template",
                TEMPLATE,
                "--json",
            )
        )
    )
    result = await live.while_clock_moves(
        lambda: invoke(live.url, "instances", "wait", created["instanceId"], "--timeout", "0.2")
    )
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.startswith(f"error: instance {created['instanceId']} is still creating after 0.2 s")


async def test_api_errors_print_code_message_and_request_id(live: LiveService) -> None:
    missing = await cli(live, "instances", "get", "inst_missing")
    assert missing.exit_code == 1 and missing.stdout == ""
    assert re.fullmatch(r"error: INSTANCE_NOT_FOUND: No instance 'inst_missing'\. \(request \S+\)\n", missing.stderr)

    invalid = await cli(live, "instances", "create", "--name", "not valid!", "--product", PRODUCT, "--template", "x")
    assert invalid.exit_code == 1 and invalid.stderr.startswith("error: VALIDATION_ERROR: The request is invalid")
    unknown = await cli(
        live, "instances", "create", "--name", "cli-x", "--product", "No Such GPU", "--template", TEMPLATE
    )
    assert unknown.exit_code == 1 and unknown.stderr.startswith("error: UNKNOWN_PRODUCT: ")

    for args in (["instances", "stop"], ["instances", "stop", "inst_x", "--name", "x"]):
        usage = await cli(live, *args)
        assert usage.exit_code == 2 and "--name" in usage.stderr


async def test_unreachable_service_exits_2() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = await asyncio.to_thread(invoke, url, "instances", "list", "--json")
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.startswith(f"error: cannot reach the service at {url} (")


async def test_api_key_from_option_or_environment_and_never_printed(tmp_path: Path) -> None:
    async with live_service(tmp_path, api_key=API_KEY) as live:
        results = [
            anonymous := await cli(live, "instances", "list"),
            wrong := await cli(live, "instances", "list", "--api-key", "wrong-key-0123"),
        ]
        for refused in (anonymous, wrong):
            assert refused.exit_code == 1 and refused.stderr.startswith("error: UNAUTHORIZED: A valid API key")
        create = ["instances", "create", "--name", "keyed", "--product", PRODUCT, "--template", TEMPLATE, "--json"]
        results += [
            created := await cli(live, *create, api_key=API_KEY),
            listed := await cli(live, "instances", "list", "--api-key", API_KEY),
            missing := await cli(live, "instances", "get", "inst_missing", "--api-key", API_KEY),
            await cli(live, "instances", "get", "keyed", "--json", api_key=API_KEY),
        ]
        assert json.loads(ok(created))["name"] == "keyed" and "keyed" in ok(listed)
        assert missing.exit_code == 1 and "INSTANCE_NOT_FOUND" in missing.stderr
        results.append(await cli(live, "instances", "list", "--help", api_key=API_KEY))
        for result in results:
            assert API_KEY not in result.output and API_KEY not in result.stderr


async def test_catalog_health_sync_and_autostop(live: LiveService) -> None:
    h = live.harness
    instance_id = (await h.create(name="cli-idle", autoStopMinutes=1))["instanceId"]
    await h.until_status(instance_id, "ready")

    assert re.search(r"RTX 4090 24GB\s+\$0\.\d+\s+yes", ok(await cli(live, "products")))
    only_4090 = json.loads(ok(await cli(live, "products", "--name", "4090", "--json")))["products"]
    assert only_4090 and all("4090" in p["productName"] for p in only_4090)
    assert "pytorch-jupyter" in ok(await cli(live, "templates"))
    health = ok(await cli(live, "health"))
    assert health.startswith(("healthy", "degraded")) and re.search(r"database\s+up", health)
    assert json.loads(ok(await cli(live, "health", "--json")))["services"]["database"]["status"] == "up"
    assert json.loads(ok(await cli(live, "instances", "sync", "--json")))["busy"] in (True, False)

    h.clock.advance(120)  # two idle minutes
    assert re.search(r"watched\s+\d+", ok(await cli(live, "autostop", "stats")))
    dry = json.loads(ok(await cli(live, "autostop", "trigger", "--json")))
    assert dry["dryRun"] is True and instance_id in [c["instanceId"] for c in dry["wouldStop"]]
    assert (await h.instance(instance_id))["status"] == "ready"
    stopped = ok(await cli(live, "autostop", "trigger", "--no-dry-run"))
    assert stopped.startswith("stopped: ") and instance_id in stopped
    assert (await h.instance(instance_id))["statusReason"] == "AUTO_STOP"
