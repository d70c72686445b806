"""JSON logs with the service name and the request id of the call being served."""

from __future__ import annotations

import io
import json
import logging

import httpx

from loopline_common.errors import REQUEST_ID_KEY
from loopline_common.logs import configure_logging, request_context


def test_log_lines_are_json_with_service_request_id_extras_and_traceback() -> None:
    stream = io.StringIO()
    configure_logging(service="demo", level="INFO", stream=stream)
    log = logging.getLogger("demo.test")
    try:
        with request_context("rid-42"):
            log.info("hello", extra={"model": "fraud"})
            try:
                raise ValueError("boom")
            except ValueError:
                log.exception("failed")
        log.debug("not shown at INFO")
    finally:
        logging.getLogger().handlers.clear()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(lines) == 2
    hello, failed = lines
    assert hello["service"] == "demo" and hello["request_id"] == "rid-42"
    assert hello["message"] == "hello" and hello["model"] == "fraud" and hello["level"] == "INFO"
    assert failed["level"] == "ERROR" and "ValueError: boom" in failed["exc_info"]


def test_a_served_request_logs_under_its_request_id(probe_factory) -> None:  # type: ignore[no-untyped-def]
    proc, port, _, _ = probe_factory()
    httpx.post(f"http://127.0.0.1:{port}/v1/fail/BUG", headers={REQUEST_ID_KEY: "trace-me"}, timeout=10)
    record = proc.wait_for_log(lambda r: r.get("request_id") == "trace-me")
    assert record["service"] == "probe"
    assert record["level"] == "ERROR"
    assert "secret internal detail" in record["exc_info"]  # the whole story is in the log, not the reply
