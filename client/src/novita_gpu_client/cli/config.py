"""The client commands' config file: named profiles, each with a service URL and an API key.

    # ~/.config/novita-gpu/config.toml ($XDG_CONFIG_HOME/novita-gpu/config.toml; NOVITA_GPU_CONFIG names another)
    default_profile = "local"          # optional: else the profile called "default", if there is one

    [profiles.local]
    url = "http://127.0.0.1:3000"

    [profiles.prod]
    url = "https://gpu.example.com"
    api_key = "..."

A file that holds a key and that other users can read gets a warning (the key would be theirs too); a
file that cannot be read as such, a profile that is not there or a setting we do not know is an error,
not ignored: a typo (`apikey`) must not send requests to the wrong service or without a key.
"""

from __future__ import annotations

import os
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

SETTINGS = ("url", "api_key")


class ConfigError(Exception):
    """The config file cannot be used as it is; the message says why and where."""


@dataclass(frozen=True)
class Profile:
    name: str
    url: str | None = None
    api_key: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class ConfigFile:
    path: Path
    profiles: dict[str, Profile]
    default_profile: str | None

    def profile(self, name: str) -> Profile:
        try:
            return self.profiles[name]
        except KeyError:
            known = ", ".join(sorted(self.profiles)) or "none"
            raise ConfigError(f"no profile {name!r} in {self.path} (profiles there: {known})") from None

    def implicit_profile(self) -> Profile | None:
        """The profile used when none is asked for: `default_profile`, else the one named "default"."""
        if self.default_profile is not None:
            return self.profile(self.default_profile)
        return self.profiles.get("default")


def config_path() -> Path:
    """NOVITA_GPU_CONFIG, else $XDG_CONFIG_HOME/novita-gpu/config.toml, else ~/.config/novita-gpu/config.toml."""
    explicit = os.environ.get("NOVITA_GPU_CONFIG")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CONFIG_HOME", "")
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".config"  # the XDG spec ignores relative paths
    return base / "novita-gpu" / "config.toml"


def load(path: Path) -> ConfigFile | None:
    """The file's profiles; None when there is no file. Raises ConfigError for anything unusable."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        document = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    unknown = set(document) - {"default_profile", "profiles"}
    if unknown:
        raise ConfigError(f"{path}: unknown setting(s) {', '.join(sorted(unknown))}; it holds [profiles.NAME] tables")
    default_profile = document.get("default_profile")
    if default_profile is not None and not isinstance(default_profile, str):
        raise ConfigError(f"{path}: default_profile must be a profile's name")
    tables = document.get("profiles", {})
    if not isinstance(tables, dict):
        raise ConfigError(f"{path}: profiles must be tables, [profiles.NAME]")
    profiles = {name: _profile(path, name, table) for name, table in tables.items()}
    config = ConfigFile(path, profiles, default_profile)
    if default_profile is not None:
        config.profile(default_profile)  # a default that names nothing is a mistake now, not at some later use
    return config


def _profile(path: Path, name: str, table: object) -> Profile:
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: profiles.{name} must be a table")
    unknown = set(table) - set(SETTINGS)
    if unknown:
        raise ConfigError(
            f"{path}: profiles.{name} has unknown setting(s) {', '.join(sorted(unknown))} "
            f"(known: {', '.join(SETTINGS)})"
        )
    for key, value in table.items():
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{path}: profiles.{name}.{key} must be a non-empty string")
    return Profile(name, table.get("url"), table.get("api_key"))


def exposure_warning(config: ConfigFile) -> str | None:
    """A warning when the file holds an API key and users other than its owner may read it."""
    if not any(p.api_key for p in config.profiles.values()):
        return None
    try:
        mode = config.path.stat().st_mode
    except OSError:
        return None
    if not mode & (stat.S_IRGRP | stat.S_IROTH):
        return None
    return (
        f"warning: {config.path} holds an API key and other users can read it "
        f"(mode {stat.S_IMODE(mode):o}); run: chmod 600 {config.path}"
    )
