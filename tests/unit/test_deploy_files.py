"""The deployment files agree with the code: Dockerfile, .dockerignore, compose.yaml, .env.example and the
systemd unit name only settings that exist, run CLI commands and flags that exist, on the service's port,
with the health check on its /health. No container daemon is needed: the files are read, not run."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from fnmatch import fnmatch
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml
from pydantic import AliasChoices

from novita_gpu.app import create_app
from novita_gpu.cli import app as cli_app
from novita_gpu.kit.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "compose.yaml"
ENV_EXAMPLE = ROOT / ".env.example"
UNIT = ROOT / "deploy" / "novita-gpu.service"
NOVITA_GPU = Path(sys.executable).parent / "novita-gpu"
OUR_IMAGE = "novita-gpu:local"

# Variables the image sets for Python and pip, not for the service.
NOT_SETTINGS = frozenset(
    {"PATH", "PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED", "PIP_DISABLE_PIP_VERSION_CHECK", "PIP_NO_CACHE_DIR"}
)
# Hardening the unit must keep (docs/deployment.md promises them).
HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "DynamicUser": "yes",
    "StateDirectory": "novita-gpu",
    "CapabilityBoundingSet": "",
    "RestrictNamespaces": "yes",
    "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes",
    "SystemCallArchitectures": "native",
}


# -- what the code offers ---------------------------------------------------------------------------------


@cache
def setting_names() -> frozenset[str]:
    """The environment variables Settings reads: upper-cased field names, plus their aliases."""
    names: set[str] = set()
    for name, field in Settings.model_fields.items():
        names.add(name.upper())
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(str(choice).upper() for choice in alias.choices)
        elif isinstance(alias, str):
            names.add(alias.upper())
        if field.alias:
            names.add(field.alias.upper())
    return frozenset(names)


def cli_command(words: list[str]) -> tuple[str, Any]:
    """The path of sub-commands `novita-gpu <words...>` runs ("instances list") and its (click) command."""
    command: Any = typer.main.get_command(cli_app)
    path: list[str] = []
    for word in words:
        subcommands = getattr(command, "commands", None)  # a group (typer ships its own click)
        if subcommands is None or word not in subcommands:
            break
        command = subcommands[word]
        path.append(word)
    return " ".join(path), command


def assert_cli_accepts(argv: list[str]) -> None:
    """`argv` (["novita-gpu", "serve", "--host", ...]) names a real sub-command with real flags, whose
    --help exits 0 as a process."""
    assert argv[0] in ("novita-gpu", str(NOVITA_GPU)) or argv[0].endswith("/bin/novita-gpu"), argv
    words = [w for w in argv[1:] if not w.startswith("-")]
    path, command = cli_command(words)
    assert path and not hasattr(command, "commands"), f"novita-gpu has no sub-command {' '.join(words)!r}"
    options = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    for flag in (w.split("=", 1)[0] for w in argv[1:] if w.startswith("--")):
        assert flag in options, f"`novita-gpu {path}` has no flag {flag} (it has {sorted(options)})"
    helped = subprocess.run([str(NOVITA_GPU), *path.split(), "--help"], capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0, helped.stderr
    for flag in (w.split("=", 1)[0] for w in argv[1:] if w.startswith("--")):
        assert flag in helped.stdout, f"`novita-gpu {path} --help` does not show {flag}"


def assert_settings(names: set[str] | list[str], where: str) -> None:
    unknown = sorted(set(names) - setting_names())
    assert not unknown, f"{where} names variables that are no setting: {unknown}"


# -- Dockerfile -------------------------------------------------------------------------------------------


@cache
def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        if not pending and (not raw.strip() or raw.lstrip().startswith("#")):
            continue
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        lines.append(pending + raw)
        pending = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip()) for line in lines]


def instructions(name: str) -> list[str]:
    return [args for instruction, args in dockerfile() if instruction == name]


def final_stage() -> list[tuple[str, str]]:
    starts = [i for i, (instruction, _) in enumerate(dockerfile()) if instruction == "FROM"]
    return dockerfile()[starts[-1] :]


def env_of(stage: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction, args in stage:
        if instruction == "ENV":
            for pair in shlex.split(args):
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def test_the_image_runs_the_serve_command_listening_beyond_loopback() -> None:
    (cmd,) = [args for instruction, args in final_stage() if instruction == "CMD"]
    argv = json.loads(cmd)  # the exec form: signals reach the service, not a shell
    assert argv == ["novita-gpu", "serve", "--host", "0.0.0.0"]
    assert_cli_accepts(argv)
    assert not instructions("ENTRYPOINT")


def test_every_variable_the_image_sets_is_a_setting() -> None:
    names = set(env_of(dockerfile())) - NOT_SETTINGS
    assert_settings(names, "Dockerfile")
    # Access is left to the operator: the image must not switch the exposure check off.
    assert "ALLOW_UNAUTHENTICATED" not in names and "API_KEYS" not in names


def test_the_image_keeps_its_state_in_the_volume_as_a_user_without_privileges() -> None:
    stage = final_stage()
    (volume,) = [json.loads(args) for instruction, args in stage if instruction == "VOLUME"]
    assert volume == ["/data"]
    env = env_of(stage)
    settings = Settings(_env_file=None, database_url=env["DATABASE_URL"], emulator_state=env["EMULATOR_STATE"])
    assert settings.database_url.startswith("sqlite+aiosqlite:////data/")
    assert str(settings.emulator_state).startswith("/data/")
    (user,) = [args for instruction, args in stage if instruction == "USER"]
    assert user.split(":")[0] not in ("root", "0")
    assert any(i == "RUN" and "useradd" in a and user.split(":")[0] in a for i, a in stage)


def test_the_image_installs_the_package_with_the_locked_dependencies() -> None:
    installs = [args for args in instructions("RUN") if "pip install" in args]
    assert installs and all("-c requirements.lock" in args for args in installs)
    assert all("--no-cache-dir" in args for args in installs)
    assert any(re.search(r"pip install [^&]*\s\.(\s|$)", args) for args in installs)


def test_the_image_exposes_the_service_port_and_checks_its_health_path() -> None:
    default_port = Settings.model_fields["port"].default
    assert instructions("EXPOSE") == [str(default_port)]
    (healthcheck,) = instructions("HEALTHCHECK")
    argv = json.loads(healthcheck.split(" CMD ", 1)[1])
    script = argv[-1]
    assert argv[:2] == ["python", "-c"] and "'http://127.0.0.1:%s/health'" in script
    assert f"os.environ.get('PORT', '{default_port}')" in script
    assert create_app(Settings(_env_file=None)).url_path_for("health") == "/health"  # GET /health's handler
    compile(script, "<healthcheck>", "exec")  # tests/integration/observability/test_deploy_healthcheck.py runs it


def dockerignore_includes(path: str) -> bool:
    """Whether a path of the build context is sent (Docker's rules: the last matching pattern wins)."""
    included = True
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line.lstrip("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch(prefix, pattern) for prefix in prefixes) or (
            "**" in pattern and fnmatch(path, pattern.replace("**/", "*"))
        ):
            included = negated
    return included


def test_the_build_context_holds_what_the_image_copies_and_no_secrets() -> None:
    copied = []
    for args in instructions("COPY"):
        if "--from=" in args:
            continue
        copied += args.split()[:-1]
    assert copied
    for source in copied:
        assert (ROOT / source).exists(), source
        assert dockerignore_includes(source.rstrip("/")), f".dockerignore leaves out {source}"
    assert dockerignore_includes("src/novita_gpu/web/static/swagger-ui/swagger-ui-bundle.js")
    for secret in (".env", "data/novita-gpu.db", ".venv/bin/python", ".git/config", "src/novita_gpu/__pycache__/x.pyc"):
        assert not dockerignore_includes(secret), secret


# -- compose.yaml -----------------------------------------------------------------------------------------


@cache
def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return document


def our_services() -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in compose()["services"].items()
        if service.get("image") == OUR_IMAGE or service.get("build")
    }


def command_of(service: dict[str, Any]) -> list[str]:
    command = service.get("command")
    if command is None:
        (cmd,) = [args for instruction, args in final_stage() if instruction == "CMD"]
        return list(json.loads(cmd))
    return shlex.split(command) if isinstance(command, str) else list(command)


def interpolated(text: str) -> set[str]:
    return set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", text))


def test_compose_runs_two_replicas_of_the_service_on_postgresql() -> None:
    services = compose()["services"]
    replicas = {name: s for name, s in our_services().items() if command_of(s)[1] == "serve"}
    assert len(replicas) == 2
    for name, service in replicas.items():
        assert "profiles" not in service, name
        url = service["environment"]["DATABASE_URL"]
        assert url.startswith("postgresql+asyncpg://") and "@postgres:5432/" in url
        assert services["postgres"]["image"].startswith("postgres:")
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert "${API_KEYS:?" in service["environment"]["API_KEYS"]  # refuses to start without keys
    host_ports = [str(p).rsplit(":", 2)[-2] for s in replicas.values() for p in s["ports"]]
    assert len(set(host_ports)) == 2
    assert "redis" in services["redis"]["profiles"]
    assert services["redis"]["image"].startswith("redis:")


def test_every_variable_compose_gives_the_service_is_a_setting() -> None:
    for name, service in our_services().items():
        assert_settings(set(service.get("environment") or {}), f"compose.yaml service {name}")


def test_compose_runs_real_commands_and_publishes_the_port_they_listen_on() -> None:
    default_port = Settings.model_fields["port"].default
    for name, service in our_services().items():
        argv = command_of(service)
        assert_cli_accepts(argv)
        port = int(argv[argv.index("--port") + 1]) if "--port" in argv else default_port
        for mapping in service.get("ports", []):
            assert str(mapping).rsplit(":", 1)[1] == str(port), (name, mapping)
        if argv[1] == "emulator":
            assert "--state" in argv and argv[argv.index("--state") + 1].startswith("/data/")
            assert service["healthcheck"] == {"disable": True}  # the image's checks /health on PORT
            base = f"http://{name}:{port}/gpu-instance/openapi"
            assert f"NOVITA_API_BASE_URL={base}" in ENV_EXAMPLE.read_text()


def test_every_value_compose_reads_from_env_is_in_the_example() -> None:
    documented = env_example_names()
    missing = sorted(interpolated(COMPOSE.read_text()) - documented)
    assert not missing, f".env.example does not mention {missing}"
    passed_through = {
        key for s in our_services().values() for key, value in (s.get("environment") or {}).items() if value is None
    }
    assert not sorted(passed_through - documented - readme_names()), "pass-through variables nobody documents"


# -- .env.example -----------------------------------------------------------------------------------------


def env_example_names() -> set[str]:
    return set(re.findall(r"^#?([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), re.MULTILINE))


def readme_names() -> set[str]:
    return set(re.findall(r"`([A-Z][A-Z0-9_]+)`", (ROOT / "README.md").read_text()))


def test_every_variable_in_the_example_is_a_setting_or_read_by_compose() -> None:
    compose_only = interpolated(COMPOSE.read_text()) - setting_names()
    assert compose_only <= {"POSTGRES_PASSWORD", "BIND_ADDRESS"}
    assert_settings(env_example_names() - compose_only, ".env.example")


def test_the_example_parses_as_the_service_reads_it(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(ENV_EXAMPLE.read_text().replace("API_KEYS=\n", "API_KEYS=" + "k" * 32 + "\n"))
    settings = Settings(_env_file=env_file)
    assert [key.get_secret_value() for key in settings.api_keys] == ["k" * 32]
    assert settings.emulator_mode  # NOVITA_API_KEY= (empty) is the emulator, not a key ""


# -- systemd ----------------------------------------------------------------------------------------------


@cache
def unit() -> list[tuple[str, str, str]]:
    """(section, key, value) of the unit file."""
    entries: list[tuple[str, str, str]] = []
    section = ""
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        entries.append((section, key.strip(), value.strip()))
    return entries


def unit_values(key: str) -> list[str]:
    return [value for _, k, value in unit() if k == key]


def test_the_unit_runs_the_serve_command_with_settings_that_exist() -> None:
    (exec_start,) = unit_values("ExecStart")
    argv = shlex.split(exec_start)
    assert argv[0] == "/opt/novita-gpu/bin/novita-gpu" and argv[1] == "serve"
    assert_cli_accepts(argv)
    environment = dict(value.split("=", 1) for entry in unit_values("Environment") for value in shlex.split(entry))
    assert_settings(set(environment), "deploy/novita-gpu.service")
    assert environment["HOST"] == "127.0.0.1"  # behind a reverse proxy
    assert int(environment["PORT"]) == Settings.model_fields["port"].default
    state = "/var/lib/" + unit_values("StateDirectory")[0]
    assert environment["DATABASE_URL"] == f"sqlite+aiosqlite:///{state}/novita-gpu.db"
    assert environment["EMULATOR_STATE"].startswith(state + "/")
    assert unit_values("WorkingDirectory") == [state]
    assert unit_values("EnvironmentFile") == ["-/etc/novita-gpu/env"]


def test_the_unit_and_the_guide_install_the_filled_in_env_as_the_units_environment_file() -> None:
    # The service reads `.env` from its working directory; under systemd the settings come from the
    # unit's EnvironmentFile=. The unit's comments and docs/deployment.md install the same file there:
    # the .env filled in from .env.example, never the example itself.
    assert Settings.model_config["env_file"] == ".env"
    (environment_file,) = unit_values("EnvironmentFile")
    target = re.escape(environment_file.removeprefix("-"))
    for path in (UNIT, ROOT / "docs" / "deployment.md"):
        installed = re.findall(rf"install -m 0600 (\S+) {target}\b", path.read_text())
        assert installed == [".env"], (path.name, installed)
    assert "cp .env.example .env" in UNIT.read_text()


def test_the_unit_is_hardened() -> None:
    for key, value in HARDENING.items():
        assert unit_values(key) == [value], key
    families = set(unit_values("RestrictAddressFamilies")[0].split())
    assert families == {"AF_UNIX", "AF_INET", "AF_INET6"}
    assert "@system-service" in unit_values("SystemCallFilter")
    assert unit_values("WantedBy") == ["multi-user.target"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    # verify wants ExecStart to exist: the same unit, pointing at this environment's novita-gpu.
    copy = tmp_path / "novita-gpu.service"
    copy.write_text(UNIT.read_text().replace("/opt/novita-gpu/bin/novita-gpu", str(NOVITA_GPU)))
    checked = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(copy)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stderr
    # Unknown or invalid keys are only warnings to it.
    assert str(copy) not in checked.stderr, checked.stderr
