"""novita_gpu_client.results under its former name (an HTTP answer as a result or an `ApiError`)."""

from novita_gpu_client.results import api_error, connection_error, named, result, retry_after_seconds
from novita_gpu_client.retry_timing import parse_retry_after

__all__ = ["api_error", "connection_error", "named", "parse_retry_after", "result", "retry_after_seconds"]
