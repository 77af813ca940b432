"""A self-hosted control plane for Novita.ai GPU instances."""

__version__ = "0.1.0"
