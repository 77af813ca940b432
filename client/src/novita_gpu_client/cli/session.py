"""What every client command shares: its options (service URL, API key, --json) and one SDK client
whose errors become a line on stderr and the exit code (1: the API said no, 2: no service there, or
the URL or config file cannot be used).

Where the URL and the key come from, first found wins, each on its own:
1. `--url` / `--api-key` after the subcommand, then before it (`novita-gpu --url ... instances list`);
2. the profile named by `--profile` (a choice made on this command line beats the shell's variables);
3. NOVITA_GPU_URL / NOVITA_GPU_API_KEY;
4. the profile named by NOVITA_GPU_PROFILE, else the config file's default profile (config.py);
5. http://127.0.0.1:3000 and no key.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Annotated, Any

import typer

from novita_gpu_client import (
    DEFAULT_URL,
    ApiError,
    Client,
    InstanceFailed,
    InstanceStopped,
    RetryPolicy,
    ServiceConnectionError,
    VolumeFailed,
    VolumeWaitTimeout,
    WaitTimeout,
)
from novita_gpu_client.cli.config import ConfigError, ConfigFile, Profile, config_path, exposure_warning, load

# Where each of this run's settings came from: {"url": (value, "COMMANDLINE" | "ENVIRONMENT" | "DEFAULT")},
# and the options given before the subcommand under "global_url", "global_api_key", "profile". Filled by
# the options' callbacks while the command line is parsed (a ContextVar: one run per thread in tests).
_sources: ContextVar[dict[str, tuple[Any, str]] | None] = ContextVar("novita_gpu_cli_sources", default=None)


def _remember(ctx: typer.Context, param: typer.CallbackParam, value: Any) -> Any:
    """Option callback: note the value and whether the command line, the environment or the default gave it."""
    sources = _sources.get()
    if sources is None:
        sources = {}
        _sources.set(sources)
    source = ctx.get_parameter_source(param.name) if param.name else None
    given = source.name if source is not None else "DEFAULT"
    earlier = sources.get(str(param.name))
    if earlier is not None and _RANK.get(earlier[1], 0) > _RANK.get(given, 0):
        return value  # a group's option (`budget --url ... set`) wins over its subcommand's environment or default
    sources[str(param.name)] = (value, given)
    return value


_RANK = {"COMMANDLINE": 2, "ENVIRONMENT": 1}


def begin(
    url: str | None,
    api_key: str | None,
    profile: str | None,
    profile_from_command_line: bool,
    retry_for: float | None = None,
) -> None:
    """The root callback's part: a fresh record for this run, with the options given before the subcommand."""
    _sources.set(
        {
            "global_url": (url, "COMMANDLINE"),
            "global_api_key": (api_key, "COMMANDLINE"),
            "profile": (profile, "COMMANDLINE" if profile_from_command_line else "ENVIRONMENT"),
            "retry_for": (retry_for, "COMMANDLINE"),
        }
    )


# How long one request may take, retries included, before a command gives up (`--retry-for`): the service
# answers 503 within 5 s when Novita cannot be reached, so a command ends within 10 s, start-up included.
RETRY_FOR = 6.0
RETRY_FOR_HELP = (
    "Seconds a request may take, retries included, before the command gives up (default 6; "
    "waits for a status are set by their --timeout)."
)


def retry_policy() -> tuple[float, RetryPolicy]:
    """Each request's timeout and the retry policy of this run's client."""
    given = (_sources.get() or {}).get("retry_for", (None, ""))[0]
    seconds = float(given) if given is not None else RETRY_FOR
    return seconds, RetryPolicy(give_up_after=seconds)


Url = Annotated[
    str | None,
    typer.Option(
        "--url",
        envvar="NOVITA_GPU_URL",
        metavar="URL",
        help="The service's base URL (default: the profile's, else http://127.0.0.1:3000).",
        show_default=False,
        callback=_remember,
    ),
]
ApiKey = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        envvar="NOVITA_GPU_API_KEY",
        metavar="KEY",
        help="API key, sent as a Bearer token.",
        show_default=False,
        callback=_remember,
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print the server's JSON instead of a table.")]
InstanceId = Annotated[str, typer.Argument(help="Instance id (inst_...).")]
_REF_HELP = "An instance id (inst_...) or name: the live one, else the last terminated one."
InstanceRef = Annotated[str, typer.Argument(metavar="ID|NAME", help=_REF_HELP)]
OptionalRef = Annotated[
    str | None,
    typer.Argument(metavar="ID|NAME", help=_REF_HELP, show_default=False),
]
# Kept from before names were accepted as the argument: `instances stop --name NAME`.
ByName = Annotated[
    str | None, typer.Option("--name", metavar="NAME", help="The instance with this name (same as ID|NAME).")
]
# Kept for `novita-gpu events`' signature (cli/events.py).
OptionalId = OptionalRef

GLOBAL_URL_HELP = "The service's base URL, for every subcommand (NOVITA_GPU_URL; a subcommand's --url wins)."
GLOBAL_KEY_HELP = "API key for every subcommand (NOVITA_GPU_API_KEY; a subcommand's --api-key wins)."
PROFILE_HELP = "The profile of ~/.config/novita-gpu/config.toml to use (docs/cli.md)."

_warned: set[str] = set()


def fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=code)


def _config(required_by: str | None) -> ConfigFile | None:
    """The config file (warning once when it exposes a key); with `required_by`, its absence is an error."""
    path = config_path()
    config = load(path)
    if config is None:
        if required_by is not None:
            raise ConfigError(f"{required_by} names a profile, but there is no config file at {path}")
        return None
    warning = exposure_warning(config)
    if warning and str(path) not in _warned:
        _warned.add(str(path))
        typer.echo(warning, err=True)
    return config


def _layers() -> list[dict[str, Any]]:
    """Where each setting may come from, highest first (the module's docstring)."""
    sources = _sources.get() or {}
    names = ("url", "api_key")

    def given(source: str) -> dict[str, Any]:
        return {name: sources[name][0] for name in names if name in sources and sources[name][1] == source}

    local, env = given("COMMANDLINE"), given("ENVIRONMENT")
    globals_ = {name: sources.get(f"global_{name}", (None, ""))[0] for name in names}
    profile_name, profile_source = sources.get("profile", (None, ""))
    chosen_on_command_line = profile_name is not None and profile_source == "COMMANDLINE"
    profile: Profile | None = None
    if profile_name is not None:
        config = _config("--profile" if chosen_on_command_line else "NOVITA_GPU_PROFILE")
        assert config is not None
        profile = config.profile(profile_name)
    elif any(local.get(name) is None and globals_.get(name) is None for name in names):
        config = _config(None)  # a setting not given as a flag may come from the file
        profile = config.implicit_profile() if config is not None else None
    from_profile = {"url": profile.url, "api_key": profile.api_key} if profile is not None else {}
    if chosen_on_command_line:
        return [local, globals_, from_profile, env]
    return [local, globals_, env, from_profile]


def settings(url: str | None, api_key: str | None) -> tuple[str, str | None]:
    """The URL and API key a command uses (see the module's docstring). Raises ConfigError. Called outside
    a parsed command line (no record of where values came from), `url` and `api_key` are used as given."""
    layers = _layers() if _sources.get() is not None else [{"url": url, "api_key": api_key}]

    def first(name: str) -> Any:
        return next((layer[name] for layer in layers if layer.get(name) is not None), None)

    return first("url") or DEFAULT_URL, first("api_key")


@contextlib.contextmanager
def client_for(url: str | None, api_key: str | None) -> Iterator[Client]:
    """A client for one command; SDK errors become a line on stderr and the exit code."""
    try:
        base_url, key = settings(url, api_key)
        timeout, retry = retry_policy()
        client = Client(base_url, api_key=key, timeout=timeout, retry=retry)
    except ConfigError as exc:
        raise fail(str(exc), 2) from exc
    except ValueError as exc:  # a URL that cannot be used (sdk/config.py says why)
        raise fail(str(exc), 2) from exc
    try:
        with client:
            yield client
    except ApiError as exc:
        raise fail(f"{exc.code}: {exc.explanation} (request {exc.request_id or 'unknown'})", 1) from exc
    except InstanceStopped as exc:
        name = exc.instance.get("name") or exc.instance.get("instanceId")
        action = "start" if exc.needs == "started" else "delete"
        raise fail(f"{exc} (novita-gpu instances {action} {name})", 1) from exc
    except (InstanceFailed, WaitTimeout, VolumeFailed, VolumeWaitTimeout) as exc:
        raise fail(str(exc), 1) from exc
    except ServiceConnectionError as exc:
        raise fail(
            f"{exc}. Is `novita-gpu serve` running there? (--url, NOVITA_GPU_URL or a profile: docs/cli.md)", 2
        ) from exc
