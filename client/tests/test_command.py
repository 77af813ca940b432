"""The `novita-gpu` command of the client distribution: what it says without its extra, the commands other
distributions add to it (the server's serve, emulator and db), and a client command against a service."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

import typer
from typer.testing import CliRunner

from conftest import FakeService
from novita_gpu_client.__main__ import MISSING_EXTRA
from novita_gpu_client.cli import app
from novita_gpu_client.cli.plugins import GROUP, add_commands, command_names

CLIENT_COMMANDS = {
    "instances",
    "volumes",
    "pools",
    "events",
    "products",
    "templates",
    "health",
    "autostop",
    "costs",
    "budget",
    "me",
    "teams",
    "audit",
}
NO_CONFIG = {"NOVITA_GPU_CONFIG": str(Path(__file__).parent / "no-such-config.toml"), "NOVITA_GPU_PROFILE": None}


def test_without_the_cli_extra_one_line_says_how_to_install_it() -> None:
    blocked = "import sys; sys.modules['typer'] = None; from novita_gpu_client.__main__ import main; main()"
    done = subprocess.run([sys.executable, "-c", blocked], capture_output=True, text=True, timeout=60, check=False)
    assert (done.returncode, done.stdout, done.stderr) == (1, "", MISSING_EXTRA + "\n")
    assert "pip install 'novita-gpu-client[cli]'" in MISSING_EXTRA


def test_the_command_has_the_client_commands_and_those_installed_distributions_add() -> None:
    added = {entry.name for entry in entry_points(group=GROUP)}  # the server's, when it is installed
    assert command_names(app) == CLIENT_COMMANDS | added
    shown = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "80"})
    assert shown.exit_code == 0
    listed = {line.split()[0] for line in shown.stdout.split("Commands:", 1)[1].splitlines() if line[2:3].isalpha()}
    assert listed == CLIENT_COMMANDS | added


# -- what an entry point of GROUP may be: a command, a group, or something that cannot be loaded ------------


def hello(name: str = "world") -> None:
    """Say hello."""
    typer.echo(f"hello {name}")


store = typer.Typer(help="A group of commands.", no_args_is_help=True)


@store.command()
def upgrade() -> None:
    typer.echo("upgraded")


def test_entry_points_add_commands_and_groups_and_never_replace_one() -> None:
    host = typer.Typer()

    @host.command()
    def instances() -> None:
        typer.echo("the client's own")

    @host.command()
    def other() -> None:
        """Keeps a single command from becoming the whole program."""

    found = [
        EntryPoint("hello", "test_command:hello", GROUP),
        EntryPoint("store", "test_command:store", GROUP),
        EntryPoint("instances", "test_command:hello", GROUP),  # taken: ignored
        EntryPoint("broken", "no_such_module_anywhere:serve", GROUP),
    ]
    assert add_commands(host, found) == ["hello", "store", "broken"]
    runner = CliRunner()
    assert runner.invoke(host, ["hello", "--name", "you"]).stdout == "hello you\n"
    assert runner.invoke(host, ["store", "upgrade"]).stdout == "upgraded\n"
    assert runner.invoke(host, ["instances"]).stdout == "the client's own\n"
    broken = runner.invoke(host, ["broken"])
    assert broken.exit_code == 1
    assert broken.stderr.startswith("error: `novita-gpu broken` (no_such_module_anywhere:serve) cannot be loaded: ")
    assert "ModuleNotFoundError" in broken.stderr and len(broken.stderr.splitlines()) == 1


# -- a client command against a service ---------------------------------------------------------------------


def test_a_client_command_prints_the_answer_and_an_error_in_one_line(service: FakeService) -> None:
    instance = {"instanceId": "inst_0123456789abcdef0123", "name": "job-1", "status": "ready"}
    service.route("GET", "/api/instances/inst_0123456789abcdef0123", (200, instance))
    runner = CliRunner()
    env = {**NO_CONFIG, "NOVITA_GPU_URL": service.url, "NOVITA_GPU_API_KEY": "sk-cli"}
    shown = runner.invoke(app, ["instances", "get", "inst_0123456789abcdef0123", "--json"], env=env)
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout) == instance
    assert service.requests[0].headers["authorization"] == "Bearer sk-cli"
    missing = runner.invoke(app, ["instances", "get", "inst_ffffffffffffffffffff"], env=env)
    assert missing.exit_code == 1 and missing.stderr == "error: NOT_FOUND: No such route. (request req-404)\n"
