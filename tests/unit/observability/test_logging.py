"""configure_logging: one JSON shape for structlog and stdlib lines, context ids, and no secrets."""

from __future__ import annotations

import io
import logging
import re
import uuid

import structlog

from novita_gpu.observability.logging import REDACTED, REQUEST_LOGGER, configure_logging, log_request, register_secret

from .conftest import LogReader


def _secret(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def test_a_structlog_line_is_json_with_utc_timestamp_level_logger_and_bound_context(
    read_logs: LogReader,
) -> None:
    log = structlog.get_logger("novita_gpu.test")
    with structlog.contextvars.bound_contextvars(request_id="req-1", instance_id="inst-9"):
        log.info("instance_ready", gpu_num=2)
    log.info("after_request")

    first, second = read_logs()
    assert first["event"] == "instance_ready"
    assert first["level"] == "info"
    assert first["logger"] == "novita_gpu.test"
    assert first["gpu_num"] == 2
    assert (first["request_id"], first["instance_id"]) == ("req-1", "inst-9")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z", first["timestamp"])
    assert "request_id" not in second


def test_stdlib_records_go_through_the_same_renderer(read_logs: LogReader) -> None:
    with structlog.contextvars.bound_contextvars(request_id="req-2"):
        logging.getLogger("uvicorn.error").warning("Started server process [%d]", 42)

    (line,) = read_logs()
    assert line["event"] == "Started server process [42]"
    assert (line["level"], line["logger"], line["request_id"]) == ("warning", "uvicorn.error", "req-2")


def test_level_filters_lines(log_stream: io.StringIO, read_logs: LogReader) -> None:
    configure_logging("WARNING", "json", log_stream)
    log = structlog.get_logger("novita_gpu.test")
    log.info("quiet")
    logging.getLogger("httpx").info("quiet too")
    log.warning("loud")

    assert [line["event"] for line in read_logs()] == ["loud"]


def test_sensitive_fields_and_registered_secrets_never_reach_the_output(
    log_stream: io.StringIO, read_logs: LogReader
) -> None:
    novita_key, api_key, webhook_secret = _secret("nk"), _secret("ak"), _secret("whsec")
    env_value, bearer = _secret("envval"), _secret("tok")
    for value in (novita_key, api_key, webhook_secret):
        register_secret(value)
    log = structlog.get_logger("novita_gpu.test")

    log.info(
        "upstream_request",
        headers={"Authorization": f"Bearer {bearer}", "X-API-Key": api_key, "Accept": "application/json"},
        api_key=api_key,
        token=bearer,
        password=env_value,
        envs=[{"key": "HF_TOKEN", "value": env_value}],
        Cookie=f"session={bearer}",
        request={"body": {"env": {"A": env_value}, "webhook_secret": webhook_secret}},
        note=f"calling with Authorization: Bearer {bearer}",
        url=f"https://hooks.example.com/in?token={bearer}&team=ml",
    )
    try:
        raise RuntimeError(f"upstream refused key {novita_key} for hook {webhook_secret}")
    except RuntimeError:
        log.exception("create_failed")
    logging.getLogger("httpx").error("POST failed with key=%s", api_key)

    output = log_stream.getvalue()
    for secret in (novita_key, api_key, webhook_secret, env_value, bearer):
        assert secret not in output
    first, second, third = read_logs()
    assert first["headers"] == {"Authorization": REDACTED, "X-API-Key": REDACTED, "Accept": "application/json"}
    assert first["envs"] == first["api_key"] == first["Cookie"] == REDACTED
    assert first["request"]["body"] == {"env": REDACTED, "webhook_secret": REDACTED}
    assert first["note"] == f"calling with Authorization: Bearer {REDACTED}"
    assert first["url"] == f"https://hooks.example.com/in?token={REDACTED}&team=ml"
    assert "RuntimeError: upstream refused key [REDACTED] for hook [REDACTED]" in second["exception"]
    assert third["event"] == f"POST failed with key={REDACTED}"


def test_objects_are_masked_by_their_text_and_short_values_are_not_registered(
    log_stream: io.StringIO, read_logs: LogReader
) -> None:
    secret = _secret("obj")
    register_secret(secret)
    register_secret("abc")

    class Carrier:
        def __repr__(self) -> str:
            return f"Carrier({secret})"

        __str__ = __repr__

    structlog.get_logger("t").info("carried", carrier=Carrier(), word="abc")

    (line,) = read_logs()
    assert line["carrier"] == f"Carrier({REDACTED})"
    assert line["word"] == "abc"


def test_console_format_is_readable_and_redacted() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    secret = _secret("console")
    register_secret(secret)
    try:
        configure_logging("INFO", "console", stream)
        structlog.get_logger("novita_gpu.console").info("hello", key_used=secret, api_key=secret)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        structlog.reset_defaults()

    output = stream.getvalue()
    assert "hello" in output
    assert "novita_gpu.console" in output
    assert secret not in output
    assert not output.lstrip().startswith("{")


def test_request_lines_hold_what_the_structlog_chain_gives_any_other_line(
    log_stream: io.StringIO, read_logs: LogReader
) -> None:
    """Access lines are rendered without structlog's chain (they are the most frequent line); they must
    come out as the chain would render them, secrets masked alike."""
    secret = _secret("novita-key")
    register_secret(secret)
    fields = {"method": "GET", "route": "/api/x/{id}", "path": f"/api/x/{secret}", "status": 200, "duration_ms": 1.5}
    with structlog.contextvars.bound_contextvars(request_id="req-7", correlation_id="corr-7"):
        log_request(fields, quiet=False)
        structlog.get_logger(REQUEST_LOGGER).info("request", **fields)
        log_request(fields, quiet=True)

    direct, through_chain, quiet = read_logs()
    assert direct.pop("timestamp") and through_chain.pop("timestamp")
    assert direct == through_chain
    assert direct["path"] == f"/api/x/{REDACTED}" and direct["request_id"] == "req-7"
    assert (quiet["level"], quiet["event"]) == ("debug", "request")
    assert secret not in log_stream.getvalue()

    configure_logging("INFO", "json", log_stream)
    log_request(fields, quiet=True)
    assert len(read_logs()) == 3  # /health and /metrics lines are DEBUG


def test_request_lines_in_console_format_go_through_structlog(log_stream: io.StringIO) -> None:
    console = io.StringIO()
    configure_logging("INFO", "console", console)  # the fixture restores logging afterwards
    log_request({"method": "GET", "route": "/api/instances", "status": 200}, quiet=False)
    text = console.getvalue()
    assert "request" in text and "/api/instances" in text and not text.startswith("{")
