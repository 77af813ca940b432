"""The server and the client are two distributions of one repository: the server imports what
the two share from the client (one piece of code each), depends on the very same version of it, and adds
its commands to the client's `novita-gpu` through entry points instead of a script of its own."""

from __future__ import annotations

import tomllib
from importlib.metadata import distribution, entry_points
from pathlib import Path

import novita_gpu_client
from novita_gpu import sdk
from novita_gpu.instances import lifecycle, schemas
from novita_gpu.kit import retry_timing
from novita_gpu.webhooks import signing
from novita_gpu_client import retry_timing as client_retry_timing
from novita_gpu_client import signing as client_signing
from novita_gpu_client import vocabulary

ROOT = Path(__file__).resolve().parents[2]


def pyproject(path: Path) -> dict[str, object]:
    document: dict[str, object] = tomllib.loads(path.read_text())["project"]
    return document


def test_what_both_use_is_the_clients_one_piece_of_code() -> None:
    assert lifecycle.Status is vocabulary.Status
    assert signing.verify is client_signing.verify and signing.signature_headers is client_signing.signature_headers
    assert retry_timing.parse_retry_after is client_retry_timing.parse_retry_after
    assert retry_timing.full_jitter is client_retry_timing.full_jitter
    # The API's rule for names lives in the server's schemas too (instances/schemas.py): they must agree.
    assert schemas.NAME_PATTERN == vocabulary.NAME_PATTERN


def test_the_old_import_path_of_the_sdk_gives_the_clients_objects() -> None:
    assert sdk.__all__ == novita_gpu_client.__all__
    for name in sdk.__all__:
        assert getattr(sdk, name) is getattr(novita_gpu_client, name), name


def test_the_server_depends_on_this_very_client_and_owns_no_script() -> None:
    server, client = pyproject(ROOT / "pyproject.toml"), pyproject(ROOT / "client" / "pyproject.toml")
    assert f"novita-gpu-client[cli]=={novita_gpu_client.__version__}" in server["dependencies"]  # type: ignore[operator]
    assert "scripts" not in server and client["scripts"] == {"novita-gpu": "novita_gpu_client.__main__:main"}
    declared = server["entry-points"]["novita_gpu.commands"]  # type: ignore[index]
    assert declared == {
        "serve": "novita_gpu.cli.server:serve",
        "emulator": "novita_gpu.cli.server:emulator",
        "db": "novita_gpu.cli.db:app",
        "keys": "novita_gpu.cli.keys:app",
    }
    # As installed here: the client's command finds them.
    installed = {
        e.name: e.value for e in entry_points(group="novita_gpu.commands") if e.dist and e.dist.name == "novita-gpu"
    }
    assert installed == declared
    assert not [e for e in distribution("novita-gpu").entry_points if e.group == "console_scripts"]
