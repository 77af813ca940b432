"""The volumes an instance mounts, as a create takes them (its `volumes` option).

Each item is the API's own form, `{"volume": "datasets", "mountPoint": "/data"}`, a `("datasets", "/data")`
pair, or a volume's name or id alone, mounted where Novita mounts by default (/network). The instance is
placed in its volumes' region.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

VolumeMount = Mapping[str, str] | tuple[str, str] | str


def volume_mounts(volumes: Iterable[VolumeMount]) -> list[dict[str, str]]:
    """`volumes` in the API's form: `[{"volume": ..., "mountPoint": ...}]` (no mountPoint: the default)."""
    mounts: list[dict[str, str]] = []
    for item in volumes:
        if isinstance(item, str):
            mounts.append({"volume": item})
        elif isinstance(item, tuple):
            if len(item) != 2:
                raise TypeError(f"a volume to mount is (name, mount_point), not {item!r}")
            mounts.append({"volume": item[0], "mountPoint": item[1]})
        else:
            mounts.append(dict(item))
    return mounts
