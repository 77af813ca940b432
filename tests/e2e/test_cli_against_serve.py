"""The `novita-gpu` client commands as a user runs them: separate processes against a real
`novita-gpu serve` with its built-in emulator (20x faster), configured through NOVITA_GPU_URL, the
global options or a profile of the config file."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

from novita_gpu.kit.serving import free_port
from tests.e2e.conftest import Processes
from tests.e2e.processes import NOVITA_GPU, ServiceProcess, clean_environment

pytestmark = pytest.mark.e2e

NO_CONFIG = Path(__file__).parent / "no-such-config-dir"  # never created: no config file is read


def environment(service_url: str | None, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This environment without our settings or the user's CLI config: only what the test gives."""
    env = {
        key: value
        for key, value in clean_environment().items()
        if not key.startswith("NOVITA_GPU_") and key not in ("XDG_CONFIG_HOME", "COLUMNS")
    }
    env.update({"XDG_CONFIG_HOME": str(NO_CONFIG), "COLUMNS": "200"})
    if service_url is not None:
        env["NOVITA_GPU_URL"] = service_url
    return {**env, **(extra or {})}


def cli(service_url: str | None, *args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(NOVITA_GPU), *args],
        env=environment(service_url, env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def ok_json(service_url: str, *args: str) -> Any:
    result = cli(service_url, *args, "--json")
    assert result.returncode == 0, f"{args} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
    return json.loads(result.stdout)


@pytest.fixture
def service(processes: Processes, sqlite_url: str) -> ServiceProcess:
    return processes.service(sqlite_url, env={"EMULATOR_SPEED": "20"})


def test_a_user_drives_an_instance_through_its_life_from_the_command_line(service: ServiceProcess) -> None:
    url = service.url
    create = ["instances", "create", "--name", "cli-box", "--product", "RTX 4090 24GB", "--template"]
    ready = ok_json(url, *create, "pytorch-jupyter", "--wait", "--timeout", "120")
    assert ready["status"] == "ready" and ready["name"] == "cli-box"
    assert any(p["type"] == "http" for p in ready["connectionDetails"]["ports"])

    by_name = ok_json(url, "instances", "get", "cli-box")
    assert by_name["instanceId"] == ready["instanceId"]
    listed = ok_json(url, "instances", "list", "--status", "ready")
    assert [i["instanceId"] for i in listed] == [ready["instanceId"]]

    table = cli(url, "instances", "list")
    assert table.returncode == 0 and "cli-box" in table.stdout and "ready" in table.stdout

    assert ok_json(url, "instances", "stop", "--name", "cli-box")["status"] == "stopping"
    stopped = ok_json(url, "instances", "wait", ready["instanceId"], "--for", "stopped", "--timeout", "120")
    assert stopped["status"] == "stopped" and stopped["statusReason"] == "USER"
    assert ok_json(url, "instances", "delete", ready["instanceId"], "--yes")["status"] == "terminating"
    gone = ok_json(url, "instances", "wait", ready["instanceId"], "--for", "terminated", "--timeout", "120")
    flow = [e["to"] for e in ok_json(url, "instances", "events", gone["instanceId"])["events"]]
    assert flow[:5] == ["creating", "starting", "running", "health_checking", "ready"]
    assert flow[-4:] == ["stopping", "stopped", "terminating", "terminated"]


def test_errors_exit_non_zero_with_the_server_s_code_and_request_id(service: ServiceProcess) -> None:
    missing = cli(service.url, "instances", "get", "inst_does_not_exist")
    assert missing.returncode == 1
    assert missing.stderr.startswith("error: INSTANCE_NOT_FOUND:") and "request " in missing.stderr

    unreachable = cli(f"http://127.0.0.1:{free_port()}", "health")
    assert unreachable.returncode == 2 and "cannot reach" in unreachable.stderr


def test_a_mistake_prints_the_field_and_the_reason(service: ServiceProcess) -> None:
    create = ["instances", "create", "--name", "my instance", "--product", "RTX 4090 24GB", "--template"]
    invalid = cli(service.url, *create, "pytorch-jupyter")
    assert invalid.returncode == 1 and invalid.stdout == ""
    assert re.fullmatch(
        r"error: VALIDATION_ERROR: name: String should match pattern '.+' \(request \S+\)\n", invalid.stderr
    )
    template = cli(service.url, *create[:3], "my-box", *create[4:], "pytorch-jupter")
    assert template.returncode == 1
    assert (
        "templateId: No template with id or name 'pytorch-jupter'. Did you mean 'pytorch-jupyter'?" in template.stderr
    )
    unknown = httpx.get(f"{service.url}/api/instances", params={"stauts": "ready"}, timeout=10)
    assert unknown.status_code == 400 and "'stauts'" in unknown.json()["error"]["message"]


def fake_ssh(directory: Path) -> Path:
    """An `ssh` on PATH that prints the arguments it was run with (the test runs no real ssh)."""
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / "ssh"
    script.write_text(f"#!{sys.executable}\nimport sys\nprint('fake-ssh', *sys.argv[1:])\n")
    script.chmod(0o755)
    return directory


def answer_on_a_terminal(service_url: str, args: list[str], answer: str) -> tuple[int, str]:
    """Run the CLI on a pseudo-terminal of its own (as from a shell) and type `answer` at its prompt.
    Returns the exit code and everything the terminal showed."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [str(NOVITA_GPU), *args],
        env=environment(service_url),
        stdin=follower,
        stdout=follower,
        stderr=follower,
        start_new_session=True,
    )
    os.close(follower)
    shown = b""

    def read_for(seconds: float, until: bytes | None = None) -> None:
        nonlocal shown
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not (until and until in shown):
            if select.select([leader], [], [], 0.1)[0]:
                try:
                    shown += os.read(leader, 4096)
                except OSError:  # the process has ended and closed the terminal
                    return

    try:
        read_for(30, until=b"[y/N]")
        os.write(leader, answer.encode() + b"\n")
        code = process.wait(timeout=30)
        read_for(0.5)
    finally:
        os.close(leader)
    return code, shown.decode(errors="replace")


def test_names_everywhere_ssh_open_a_narrow_list_and_a_delete_that_asks(
    service: ServiceProcess, tmp_path: Path
) -> None:
    url = service.url
    create = ["instances", "create", "--name", "e2e-box", "--product", "RTX 4090 24GB", "--template"]
    ready = ok_json(url, *create, "pytorch-jupyter", "--label", "suite=e2e", "--wait", "--timeout", "120")
    instance_id = ready["instanceId"]
    assert ok_json(url, "instances", "stop", "e2e-box")["status"] == "stopping"
    assert ok_json(url, "instances", "wait", "e2e-box", "--for", "stopped", "--timeout", "120")["status"] == "stopped"
    assert ok_json(url, "instances", "start", "e2e-box")["status"] == "starting"
    assert ok_json(url, "instances", "wait", "e2e-box", "--timeout", "120")["instanceId"] == instance_id

    printed = cli(url, "instances", "ssh", "e2e-box", "--print")
    assert printed.returncode == 0 and re.fullmatch(r"ssh root@127\.0\.0\.1 -p \d+\n", printed.stdout)
    path = f"{fake_ssh(tmp_path / 'bin')}:{os.environ.get('PATH', '')}"
    ran = cli(url, "instances", "ssh", "e2e-box", "--", "nvidia-smi", env={"PATH": path})
    assert ran.returncode == 0 and ran.stdout == f"fake-{printed.stdout.strip()} nvidia-smi\n"
    endpoint = cli(url, "instances", "open", "e2e-box")
    assert endpoint.returncode == 0 and endpoint.stderr == ""
    assert httpx.get(endpoint.stdout.strip(), timeout=10).status_code == 200  # Jupyter's port, answering

    narrow = cli(url, "instances", "list", env={"COLUMNS": "80"})
    assert narrow.returncode == 0 and all(len(line) <= 80 for line in narrow.stdout.splitlines())
    assert re.search(r"e2e-box\s+ready\s+RTX 4090 24GB", narrow.stdout)

    refused = cli(url, "instances", "delete", "e2e-box")  # stdin is no terminal: no one to ask
    assert refused.returncode == 2 and "pass --yes" in refused.stderr
    code, shown = answer_on_a_terminal(url, ["instances", "delete", "e2e-box"], "n")
    assert code == 1 and f"Delete e2e-box ({instance_id}, RTX 4090 24GB, ready)? Its disk is lost [y/N]" in shown
    assert "error: not deleted" in shown and ok_json(url, "instances", "get", "e2e-box")["status"] == "ready"
    code, shown = answer_on_a_terminal(url, ["instances", "delete", "e2e-box"], "y")
    assert code == 0 and f"{instance_id} (e2e-box): terminating" in shown
    ok_json(url, "instances", "wait", instance_id, "--for", "terminated", "--timeout", "120")
    assert ok_json(url, "instances", "list", "--label", "suite=e2e") == []
    assert [i["instanceId"] for i in ok_json(url, "instances", "list", "--label", "suite=e2e", "--all")] == [
        instance_id
    ]


def test_global_options_and_a_profile_from_the_config_file(service: ServiceProcess, tmp_path: Path) -> None:
    config = tmp_path / "novita-gpu" / "config.toml"
    config.parent.mkdir(parents=True)
    dead = f"http://127.0.0.1:{free_port()}"
    config.write_text(f'[profiles.default]\nurl = "{dead}"\n\n[profiles.e2e]\nurl = "{service.url}"\n')
    config.chmod(0o600)
    home = {"XDG_CONFIG_HOME": str(tmp_path)}

    assert cli(None, "health", env=home).returncode == 2  # the default profile: nobody there
    profiled = cli(None, "--profile", "e2e", "health", "--json", env=home)
    assert profiled.returncode == 0 and json.loads(profiled.stdout)["status"] in ("healthy", "degraded")
    assert cli(None, "health", env={**home, "NOVITA_GPU_PROFILE": "e2e"}).returncode == 0
    bare = service.url.removeprefix("http://")  # 127.0.0.1:PORT, as pasted from the start-up line
    assert cli(dead, "--url", bare, "instances", "list", "--json").stdout == "[]\n"
    refused = cli(None, "--url", "gpu.example.com", "health")
    assert refused.returncode == 2 and "has no scheme: write https://gpu.example.com" in refused.stderr


def test_a_command_gives_up_within_10_s_when_novita_cannot_be_reached(processes: Processes, tmp_path: Path) -> None:
    """The service answers 503 within 5 s when Novita is unreachable; the CLI prints that answer rather than
    retrying it past 10 s (docs/cli.md, "When the service does not answer")."""
    unreachable = f"http://127.0.0.1:{free_port()}/gpu-instance/openapi"  # nothing listens there
    service = processes.service(
        f"sqlite+aiosqlite:///{tmp_path / 'store.db'}",
        env={"NOVITA_API_KEY": "sk-e2e-unreachable", "NOVITA_API_BASE_URL": unreachable},
    )
    create = ["instances", "create", "--name", "job", "--product", "RTX 4090 24GB", "--template", "pytorch-jupyter"]
    for args in (["products"], create):
        started = time.monotonic()
        result = cli(service.url, *args)
        took = time.monotonic() - started
        assert took < 10, (args, took, result.stderr)
        assert result.returncode == 1 and result.stderr.startswith("error: UPSTREAM_UNAVAILABLE: "), result.stderr
