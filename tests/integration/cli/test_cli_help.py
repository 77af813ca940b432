"""Every command's `--help` as a user reads it at 80 columns: nothing wider, every flag name whole, help
text on lines a person can read, and metavars that say what a flag takes (none on a switch)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import typer.main
from typer.testing import CliRunner

from novita_gpu.cli import app

WIDTH = 80
# typer's own labels for Python types: `--json <bool>` reads as a flag that takes a value.
PYTHON_TYPE_METAVAR = re.compile(r"<(bool|str|int|float|path|list\[[^\]]*\])>")


def commands() -> Iterator[tuple[list[str], object]]:
    """(path, click command) for the root and every group and subcommand under it."""

    def walk(command: object, path: list[str]) -> Iterator[tuple[list[str], object]]:
        yield path, command
        for name, sub in sorted((getattr(command, "commands", None) or {}).items()):
            yield from walk(sub, [*path, name])

    yield from walk(typer.main.get_command(app), [])


ALL = list(commands())


def render_help(path: list[str]) -> str:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": str(WIDTH), "TERM": "xterm-256color"})
    assert result.exit_code == 0, (path, result.output)
    return result.stdout


def test_every_command_is_covered() -> None:
    names = {" ".join(path) for path, _ in ALL}
    for expected in ("serve", "emulator", "db upgrade", "events", "instances create", "budget set", "autostop stats"):
        assert expected in names


@pytest.mark.parametrize("path", [path for path, _ in ALL], ids=[" ".join(path) or "novita-gpu" for path, _ in ALL])
def test_help_fits_80_columns_with_every_flag_whole(path: list[str]) -> None:
    command = dict((tuple(p), c) for p, c in ALL)[tuple(path)]
    shown = render_help(path)
    lines = shown.splitlines()
    assert all(len(line) <= WIDTH for line in lines), "\n".join(line for line in lines if len(line) > WIDTH)
    assert "…" not in shown and "╭" not in shown, shown  # nothing ellipsized, no boxes squeezing the text
    assert not PYTHON_TYPE_METAVAR.search(shown), PYTHON_TYPE_METAVAR.search(shown)
    for param in getattr(command, "params", []):
        if getattr(param, "hidden", False):
            continue
        for flag in [*param.opts, *getattr(param, "secondary_opts", [])]:
            if flag.startswith("-"):
                assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", shown), (flag, shown)
        if getattr(param, "is_flag", False):
            # A switch takes no value: nothing follows its names but the help text.
            names = [*param.opts, *getattr(param, "secondary_opts", [])]
            for line in lines:
                stripped = line.strip()
                if any(stripped.startswith(name) for name in names):
                    record = re.split(r"\s{2,}", stripped)[0]
                    assert all(part.startswith("-") for part in re.split(r"[,/;]\s*|\s+/\s+", record)), record
    # Help text is written at a readable width: an option's description never starts further right than
    # column 34 (so it has 46 columns), and no description line is a stub of a few characters.
    options = shown.split("Options:", 1)[-1].split("Commands:", 1)[0]
    for line in options.splitlines():
        if line.strip():
            assert len(line) - len(line.lstrip()) <= 34, line


def test_create_help_is_short_enough_to_read() -> None:
    shown = render_help(["instances", "create"])
    assert len(shown.splitlines()) <= 80, len(shown.splitlines())
    for record in (
        "--env KEY=VALUE",
        "--label KEY=VALUE",
        "--gpus N",
        "--max-price USD",
        "--network-storage ID[:MOUNT]",
    ):
        assert record in shown, record
    assert re.search(r"^\s+--json\s{2,}\S", shown, re.MULTILINE), shown  # a switch: no metavar after it


def test_command_lists_are_not_cut() -> None:
    shown = render_help([])
    commands_part = shown.split("Commands:", 1)[1]
    assert "..." not in commands_part, commands_part
