"""Retry timing, decided once for every caller (Novita client, webhook dispatcher, reconciler, SDK): the
client's (novita_gpu_client.retry_timing), which states the rules, so the service and the client read a
Retry-After alike."""

from novita_gpu_client.retry_timing import full_jitter, parse_retry_after

__all__ = ["full_jitter", "parse_retry_after"]
