"""Imports every table module so the metadata is complete (for migrations and tests)."""

from __future__ import annotations


def load_all_models() -> None:
    import novita_gpu.costs.models
    import novita_gpu.instances.models
    import novita_gpu.webhooks.models  # noqa: F401
