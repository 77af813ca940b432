"""The `novita-gpu` client commands against the real service and emulator over loopback HTTP.

Each command runs through typer's CliRunner in a worker thread, while the test loop serves the API and
drives the lifecycle. One service serves the module; tests that need other settings start their own.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from novita_gpu.cli import app
from novita_gpu.kit.serving import free_port
from novita_gpu.kit.tables import Instance
from tests.fixtures.live_service import LiveService, live_service

PRODUCT, TEMPLATE = "RTX 4090 24GB", "pytorch-jupyter"
API_KEY = "sk-cli-test-key-0123456789"

pytestmark = pytest.mark.asyncio(loop_scope="module")


NO_CONFIG = Path(__file__).parent / "no-such-config-dir"  # never created: no config file is read


def invoke(
    url: str | None, *args: str, api_key: str | None = None, env: dict[str, str | None] | None = None, **kw: Any
) -> Result:
    """One `novita-gpu` run (blocking). The URL and key come from the environment, as a user sets them;
    output is 80 columns wide (what a command piped elsewhere gets), and no config file is read unless
    `env` names one."""
    full = {
        "NOVITA_GPU_URL": url,
        "NOVITA_GPU_API_KEY": api_key,
        "NOVITA_GPU_PROFILE": None,
        "NOVITA_GPU_CONFIG": None,
        "XDG_CONFIG_HOME": str(NO_CONFIG),
        "COLUMNS": "80",
        **(env or {}),
    }
    return CliRunner().invoke(app, list(args), env=full, **kw)


async def cli(live: LiveService, *args: str, api_key: str | None = None, **kw: Any) -> Result:
    return await asyncio.to_thread(invoke, live.url, *args, api_key=api_key, **kw)


def last_line(stderr: str) -> str:
    """The error a failed wait ends with (the statuses it saw on the way come before it)."""
    return stderr.splitlines()[-1]


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
    assert re.search(r"cli-one\s+ready\s+RTX 4090 24GB", listed)
    assert re.search(
        rf"{instance_id}\s+cli-one\s+ready\s+-\s+RTX 4090 24GB", ok(await cli(live, "instances", "list", "--wide"))
    )
    only_ready = json.loads(ok(await cli(live, "instances", "list", "--status", "ready", "--json")))
    assert instance_id in [i["instanceId"] for i in only_ready] and {i["status"] for i in only_ready} == {"ready"}
    assert json.loads(ok(await cli(live, "instances", "list", "--name", "nobody", "--json"))) == []
    assert ok(await cli(live, "instances", "list", "--name", "nobody")) == "No instances.\n"

    waited = ok(await cli(live, "instances", "wait", instance_id, "--for", "ready,stopped", "--timeout", "5", "--json"))
    assert json.loads(waited)["status"] == "ready"
    by_name = ok(await cli(live, "instances", "wait", "cli-one", "--timeout", "5", "--json"))
    assert json.loads(by_name)["instanceId"] == instance_id


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

    assert "terminating" in ok(await cli(live, "instances", "delete", instance_id, "--yes"))
    await h.until_status(instance_id, "terminated")
    gone = await cli(live, "instances", "wait", instance_id, "--timeout", "5")
    assert gone.exit_code == 1
    assert last_line(gone.stderr) == (
        f"error: instance {instance_id} (cli-act) is terminated (USER), not ready, and never will be: "
        "a terminated instance does not change again"
    )


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
    error = last_line(result.stderr)
    assert error.startswith(f"error: instance {created['instanceId']} (cli-slow) is still creating after 0.2 s")
    assert error.endswith(f"(waiting for ready): {created['statusMessage']}")


async def test_api_errors_print_code_message_and_request_id(live: LiveService) -> None:
    missing = await cli(live, "instances", "get", "inst_missing")
    assert missing.exit_code == 1 and missing.stdout == ""
    assert re.fullmatch(r"error: INSTANCE_NOT_FOUND: No instance 'inst_missing'\. \(request \S+\)\n", missing.stderr)

    invalid = await cli(live, "instances", "create", "--name", "not valid!", "--product", PRODUCT, "--template", "x")
    assert invalid.exit_code == 1
    assert re.fullmatch(
        r"error: VALIDATION_ERROR: name: String should match pattern '.+' \(request \S+\)\n", invalid.stderr
    )
    unknown = await cli(
        live, "instances", "create", "--name", "cli-x", "--product", "No Such GPU", "--template", TEMPLATE
    )
    assert unknown.exit_code == 1 and unknown.stderr.startswith("error: UNKNOWN_PRODUCT: ")

    template = await cli(live, "instances", "create", "--name", "cli-x", "--product", PRODUCT, "--template", "nope")
    assert template.exit_code == 1 and template.stderr.startswith(
        "error: UNKNOWN_TEMPLATE: templateId: No template with id or name 'nope'."
    )
    assert "pytorch-jupyter" in template.stderr

    for args in (["instances", "stop"], ["instances", "stop", "inst_x", "--name", "x"]):
        usage = await cli(live, *args)
        assert usage.exit_code == 2 and "--name" in usage.stderr
    odd = await cli(live, "instances", "stop", "not a name")
    assert odd.exit_code == 2 and "neither an instance id (inst_...) nor an instance name" in odd.stderr


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
        results.append(global_key := await cli(live, "--api-key", API_KEY, "instances", "list"))
        assert "keyed" in ok(global_key)

        # A key from the config file; the file warns while other users can read it.
        config = write_config(tmp_path, f'[profiles.default]\nurl = "{live.url}"\napi_key = "{API_KEY}"\n')
        config.chmod(0o644)
        exposed = await asyncio.to_thread(invoke, None, "instances", "list", env={"XDG_CONFIG_HOME": str(tmp_path)})
        assert exposed.exit_code == 0 and "keyed" in exposed.stdout
        assert exposed.stderr == (
            f"warning: {config} holds an API key and other users can read it (mode 644); run: chmod 600 {config}\n"
        )
        config.chmod(0o600)
        private = await asyncio.to_thread(invoke, None, "instances", "list", env={"XDG_CONFIG_HOME": str(tmp_path)})
        assert "keyed" in ok(private)
        results += [exposed, private]
        for result in results:
            assert API_KEY not in result.output and API_KEY not in result.stderr


def write_config(home: Path, text: str) -> Path:
    """$XDG_CONFIG_HOME/novita-gpu/config.toml under `home`."""
    path = home / "novita-gpu" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o600)
    return path


async def test_url_and_key_before_the_subcommand_profiles_and_urls_without_a_scheme(
    live: LiveService, tmp_path: Path
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"

    def run(*args: str, url: str | None = None, **env: str | None) -> Result:
        return invoke(url, *args, env={"XDG_CONFIG_HOME": str(tmp_path), **env})

    async def health(*args: str, url: str | None = None, **env: str | None) -> Result:
        return await asyncio.to_thread(run, *args, "health", "--json", url=url, **env)

    async def reaches(result: Result, url: str) -> None:
        if url == live.url:
            assert json.loads(ok(result))["services"]["database"]["status"] == "up"
        else:
            assert result.exit_code == 2 and result.stderr.startswith(f"error: cannot reach the service at {url}")

    # Flags before the subcommand beat the environment; a subcommand's own flag beats them.
    await reaches(await health("--url", live.url, url=dead), live.url)
    await reaches(await asyncio.to_thread(run, "--url", dead, "health", "--url", live.url, "--json"), live.url)
    # A loopback address without http:// gets it; another host is refused, saying why.
    await reaches(await health("--url", live.url.removeprefix("http://")), live.url)
    remote = await health("--url", "gpu.example.com")
    assert remote.exit_code == 2 and remote.stderr == (
        "error: the service URL 'gpu.example.com' has no scheme: write https://gpu.example.com (or "
        "http://gpu.example.com); only localhost and 127.x addresses get http:// added, so an API key is never "
        "sent in clear text to a host by guess\n"
    )

    # Profiles: the default one, one chosen by --profile or NOVITA_GPU_PROFILE.
    write_config(
        tmp_path, f'default_profile = "here"\n[profiles.here]\nurl = "{live.url}"\n[profiles.away]\nurl = "{dead}"\n'
    )
    await reaches(await health(), live.url)
    await reaches(await health("--profile", "away"), dead)
    await reaches(await health(NOVITA_GPU_PROFILE="away"), dead)
    # The shell's NOVITA_GPU_URL beats a profile from the shell, but not one chosen on the command line.
    await reaches(await health(url=live.url, NOVITA_GPU_PROFILE="away"), live.url)
    await reaches(await health("--profile", "away", url=live.url), dead)
    await reaches(await health("--profile", "away", "--url", live.url), live.url)
    unknown = await health("--profile", "nope")
    config = tmp_path / "novita-gpu" / "config.toml"
    assert unknown.exit_code == 2
    assert unknown.stderr == f"error: no profile 'nope' in {config} (profiles there: away, here)\n"

    write_config(tmp_path, f'[profiles.default]\nurl = "{live.url}"\napikey = "typo"\n')
    typo = await health()
    assert typo.exit_code == 2 and typo.stderr == (
        f"error: {config}: profiles.default has unknown setting(s) apikey (known: url, api_key)\n"
    )
    write_config(tmp_path, "[profiles.default\n")
    assert (await health()).stderr.startswith(f"error: {config} is not valid TOML: ")
    elsewhere = tmp_path / "elsewhere.toml"
    elsewhere.write_text(f'[profiles.default]\nurl = "{live.url}"\n')
    await reaches(await health(NOVITA_GPU_CONFIG=str(elsewhere)), live.url)
    config.unlink()
    await reaches(await health(url=live.url), live.url)  # no file, no profile asked: nothing to read
    no_file = await health("--profile", "here")
    assert no_file.stderr == f"error: --profile names a profile, but there is no config file at {config}\n"


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


async def test_every_instance_command_takes_an_id_or_a_name(live: LiveService) -> None:
    h = live.harness
    instance_id = (await h.create(name="cli-named"))["instanceId"]
    await h.until_status(instance_id, "ready")

    assert ok(await cli(live, "instances", "stop", "cli-named")).startswith(f"{instance_id} (cli-named): stopping")
    await h.until_status(instance_id, "stopped")
    waited = json.loads(ok(await cli(live, "instances", "wait", "cli-named", "--for", "stopped", "--json")))
    assert waited["instanceId"] == instance_id
    assert "starting" in ok(await cli(live, "instances", "start", "cli-named"))
    await h.until_status(instance_id, "ready")
    assert ok(await cli(live, "instances", "touch", "cli-named")).startswith(f"{instance_id}: used at ")
    assert re.search(r"stopped\s+USER", ok(await cli(live, "instances", "events", "cli-named")))
    assert "terminating" in ok(await cli(live, "instances", "delete", "cli-named", "--yes"))
    await h.until_status(instance_id, "terminated")

    missing = await cli(live, "instances", "stop", "cli-nobody")
    assert missing.exit_code == 1 and missing.stderr.startswith("error: INSTANCE_NOT_FOUND: No instance 'cli-nobody'")
    # A name may itself look like an id: one that is no id is then taken as the name it is.
    lookalike = (await h.create(name="inst_lookalike"))["instanceId"]
    assert ok(await cli(live, "instances", "get", "inst_lookalike", "--json")).count(lookalike) == 1
    assert json.loads(ok(await cli(live, "instances", "stop", "inst_lookalike", "--json")))["instanceId"] == lookalike


async def test_list_fits_80_columns_hides_terminated_and_has_a_wide_form(live: LiveService) -> None:
    h = live.harness
    labels = {"suite": "list-80"}
    long_name = "a-rather-long-instance-name-for-the-table-" + "x" * 20
    kept = (await h.create(name=long_name, labels=labels, gpuNum=2))["instanceId"]
    gone = (await h.create(name="cli-gone", labels=labels))["instanceId"]
    await h.http.delete(f"/api/instances/{gone}")
    await h.until_status(gone, "terminated")

    table = ok(await cli(live, "instances", "list", "--label", "suite=list-80"))
    lines = table.splitlines()
    assert lines[0].split() == ["NAME", "STATUS", "PRODUCT", "REGION", "$/H", "AGE"]
    assert len(lines) == 2 and all(len(line) <= 80 for line in lines), table
    assert re.search(r"a-rather-long\S*…?\s+creating\s+2x RTX 4090 24GB", lines[1]), table
    assert "cli-gone" not in table

    every = ok(await cli(live, "instances", "list", "--label", "suite=list-80", "--all"))
    assert "cli-gone" in every and re.search(r"cli-gone\s+terminated \(USER\)", every)
    named = json.loads(
        ok(await cli(live, "instances", "list", "--status", "terminated", "--label", "suite=list-80", "--json"))
    )
    assert [i["instanceId"] for i in named] == [gone]

    narrow_wide = ok(await cli(live, "instances", "list", "--label", "suite=list-80", "--wide", "--all"))
    assert all(len(line) <= 80 for line in narrow_wide.splitlines()) and kept in narrow_wide and gone in narrow_wide
    assert narrow_wide.splitlines()[-1].startswith("(not shown at 80 columns: ")
    wide = ok(
        await cli(live, "instances", "list", "--label", "suite=list-80", "--wide", "--all", env={"COLUMNS": "200"})
    )
    assert wide.splitlines()[0].split()[:4] == ["ID", "NAME", "STATUS", "REASON"]
    assert re.search(rf"{kept}\s+{long_name}\s+creating\s+-\s+2x RTX 4090 24GB", wide)
    assert re.search(rf"{gone}\s+cli-gone\s+terminated\s+USER", wide) and "suite=list-80" in wide
    assert ok(await cli(live, "instances", "list", "--label", "suite=nothing")) == "No instances.\n"
    bad = await cli(live, "instances", "list", "--label", "suite")
    assert bad.exit_code == 2 and "'suite' is not KEY=VALUE" in bad.stderr


async def test_create_has_a_flag_for_everything_the_api_accepts(live: LiveService) -> None:
    novita = live.harness.services.client
    auth = await novita.create_registry_auth("cli-registry", "bot", "secret")
    storage_id = await novita.create_network_storage("5", "cli-data", 50)
    args = [
        *("instances", "create", "--name", "cli-full", "--product", PRODUCT, "--template", TEMPLATE),
        *("--gpus", "2", "--disk", "80", "--region", "EU-01", "--strict-region", "--spot", "--max-price", "50"),
        *("--env", "MODE=train", "--env", "EQUALS=a=b", "--env", "FROM_SHELL", "--label", "team=ml"),
        *("--label", "tier=gold", "--health-check-path", "/healthz", "--webhook", "http://127.0.0.1:9/hook"),
        *("--auto-stop", "15", "--image-auth-id", auth.id, "--network-storage", f"{storage_id}:/data", "--json"),
        *("--auto-stop-signal", "both", "--gpu-idle-below", "7.5", "--idle-action", "delete", "--max-runtime", "600"),
    ]
    created = json.loads(ok(await cli(live, *args, env={"FROM_SHELL": "secret-value"})))
    assert created["gpuNum"] == 2 and created["rootfsSize"] == 80 and created["billingMode"] == "spot"
    assert created["maxPricePerHour"] == 50 and created["maxRuntimeMinutes"] == 600
    policy = {k: created["autoStop"][k] for k in ("idleMinutes", "signal", "gpuIdleBelowPercent", "action")}
    assert policy == {"idleMinutes": 15, "signal": "both", "gpuIdleBelowPercent": 7.5, "action": "delete"}
    assert created["labels"] == {"team": "ml", "tier": "gold"}
    assert sorted(created["envKeys"]) == sorted(["EQUALS", "FROM_SHELL", "JUPYTER_TOKEN", "MODE", "PYTHONUNBUFFERED"])
    assert created["webhookUrl"] == "http://127.0.0.1:9/hook" and created["imageAuthId"] == auth.id
    assert created["networkStorages"] == [{"id": storage_id, "mountPoint": "/data"}]
    ready = await live.harness.until_status(created["instanceId"], "ready")
    assert ready["region"] == "EU-01"
    async with live.harness.services.db.read() as session:  # the view does not show the probed path
        row = await session.get(Instance, created["instanceId"])
        assert row is not None and row.health_check_path == "/healthz"
        sent = {env["key"]: env["value"] for env in row.envs}
    assert sent["EQUALS"] == "a=b" and sent["FROM_SHELL"] == "secret-value" and sent["MODE"] == "train"

    unset = await cli(live, *args[:8], "--env", "NOT_SET_ANYWHERE_42")
    assert unset.exit_code == 2 and "NOT_SET_ANYWHERE_42 is not set in this shell" in unset.stderr
    bad_storage = await cli(live, *args[:8], "--network-storage", "id:")
    assert bad_storage.exit_code == 2 and "not ID or ID:MOUNT" in bad_storage.stderr
    bad_signal = await cli(live, *args[:8], "--auto-stop-signal", "cpu")
    assert bad_signal.exit_code == 2 and "lastUsed" in bad_signal.stderr
    gpu_only = [*args[:2], "--name", "cli-gpu", *args[4:8], "--auto-stop-signal", "gpu", "--json"]
    assert json.loads(ok(await cli(live, *gpu_only)))["autoStop"]["signal"] == "gpu"  # the rest: the defaults


async def test_delete_asks_first_and_refuses_without_a_terminal(live: LiveService) -> None:
    h = live.harness
    instance_id = (await h.create(name="cli-keep"))["instanceId"]
    refused = await cli(live, "instances", "delete", "cli-keep", input="y\n")
    assert refused.exit_code == 2 and refused.stdout == ""
    assert refused.stderr == "error: refusing to delete without confirmation: stdin is not a terminal; pass --yes\n"
    assert (await h.instance(instance_id))["status"] == "creating"
    deleted = ok(await cli(live, "instances", "delete", "--name", "cli-keep", "-y"))
    assert deleted.startswith(f"{instance_id} (cli-keep): terminat")  # never reached Novita: terminated at once


async def test_ssh_and_open_use_the_instance_s_port_mappings(live: LiveService) -> None:
    h = live.harness
    instance_id = (await h.create(name="cli-ssh"))["instanceId"]
    early = await cli(live, "instances", "ssh", "cli-ssh", "--print")
    assert early.exit_code == 1 and "cli-ssh (" in early.stderr and "has no ssh port until it runs" in early.stderr
    ready = await h.until_status(instance_id, "ready")
    ports = {p["port"]: p["endpoint"] for p in ready["connectionDetails"]["ports"]}

    command = ok(await cli(live, "instances", "ssh", "cli-ssh", "--print"))
    assert command == ready["connectionDetails"]["ssh"]["command"] + "\n"
    assert re.fullmatch(r"ssh root@127\.0\.0\.1 -p \d+\n", command)
    forward = ok(await cli(live, "instances", "ssh", instance_id, "--print", "--", "-L", "8888:localhost:8888"))
    assert forward == command.strip() + " -L 8888:localhost:8888\n"

    assert ok(await cli(live, "instances", "open", "cli-ssh")) == ports[8888] + "\n"
    assert ok(await cli(live, "instances", "open", "cli-ssh", "22")) == ports[22] + "\n"
    missing = await cli(live, "instances", "open", "cli-ssh", "9999")
    assert missing.exit_code == 1 and "has no port 9999 (its ports: 8888/http, 22/tcp)" in missing.stderr

    await h.http.post(f"/api/instances/{instance_id}/stop")
    await h.until_status(instance_id, "stopped")
    stopped = await cli(live, "instances", "ssh", "cli-ssh")
    assert stopped.exit_code == 1
    assert stopped.stderr == (
        f"error: cli-ssh ({instance_id}) is stopped: it has no ssh port until it runs; "
        "`novita-gpu instances start cli-ssh`\n"
    )


async def test_a_wait_that_times_out_says_why(live: LiveService) -> None:
    h = live.harness
    offers = (await h.http.get("/api/products", params={"productName": "L4 24GB"})).json()["products"][0]["offers"]
    for offer in offers:
        h.capacity(offer["clusterId"], offer["productId"], 0)
    create = ["instances", "create", "--name", "cli-no-gpu", "--product", "L4 24GB", "--template", TEMPLATE]
    result = await live.while_driving(lambda: invoke(live.url, *create, "--wait", "--timeout", "1"))
    assert result.exit_code == 1 and result.stdout == ""
    assert re.fullmatch(
        r"error: instance inst_\w+ \(cli-no-gpu\) is still creating after 1 s \(waiting for ready\): "
        r"No capacity for 'L4 24GB' in any allowed region yet; waiting for some\.",
        last_line(result.stderr),
    )


async def test_create_wait_shows_each_status_on_the_way(live: LiveService) -> None:
    """`--wait` says what happens while it waits (it printed nothing for 14 s), on stderr: stdout keeps the
    answer, and --json prints no progress at all (checked above)."""
    create = ["instances", "create", "--name", "cli-live", "--product", PRODUCT, "--template", TEMPLATE]
    result = await live.while_driving(lambda: invoke(live.url, *create, "--wait", "--timeout", "60"))
    assert result.exit_code == 0, (result.stdout, result.stderr)
    shown = [re.match(r"\s*\d+ s  (\w+)", line)[1] for line in result.stderr.splitlines()]  # type: ignore[index]
    assert shown[0] == "creating" and shown[-1] == "ready", result.stderr
    assert "health_checking" in shown and shown == list(dict.fromkeys(shown))  # each change once, in order
    assert "Waiting for Novita to create the instance." in result.stderr
    assert "cli-live" in result.stdout and "ready" in result.stdout
