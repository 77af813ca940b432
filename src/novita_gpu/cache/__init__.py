"""Named caches for catalog look-ups (products, templates, clusters), never instance data."""

from novita_gpu.cache.base import DEFAULT_PREFIX, CacheBackend, CacheUnavailable
from novita_gpu.cache.fallback import FallbackBackend
from novita_gpu.cache.memory import MemoryBackend
from novita_gpu.cache.redis import RedisBackend, UpstashBackend
from novita_gpu.cache.registry import CacheRegistry, NamedCache, build_cache_backend

__all__ = [
    "DEFAULT_PREFIX",
    "CacheBackend",
    "CacheRegistry",
    "CacheUnavailable",
    "FallbackBackend",
    "MemoryBackend",
    "NamedCache",
    "RedisBackend",
    "UpstashBackend",
    "build_cache_backend",
]
