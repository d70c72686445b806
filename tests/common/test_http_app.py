"""The HTTP bootstrap against a real service process and a real HTTP client."""

from __future__ import annotations

import httpx

from loopline_common.errors import REQUEST_ID_KEY


def test_health_readiness_and_metrics(probe_factory) -> None:  # type: ignore[no-untyped-def]
    _, port, _, ready_file = probe_factory(ready=False)
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)

    assert http.get("/healthz").json() == {"status": "alive"}
    not_ready = http.get("/readyz")
    assert not_ready.status_code == 503
    assert not_ready.json()["checks"] == {"ready_file": "not ready"}

    ready_file.touch()
    assert http.get("/readyz").status_code == 200

    http.get("/v1/echo", params={"value": "a"})
    http.get("/v1/echo")  # missing parameter: 400
    text = http.get("/metrics").text
    assert 'loopline_probe_requests_total{code="OK",method="GET /v1/echo",transport="http"} 1.0' in text
    assert 'loopline_probe_requests_total{code="INVALID_ARGUMENT",method="GET /v1/echo",transport="http"} 1.0' in text
    assert 'loopline_probe_request_duration_seconds_count{method="GET /v1/echo",transport="http"} 2.0' in text
    assert "process_resident_memory_bytes" in text


def test_request_id_is_kept_when_sane_and_replaced_when_not(probe_factory) -> None:  # type: ignore[no-untyped-def]
    _, port, _, _ = probe_factory()
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
    kept = http.get("/v1/echo", params={"value": "x"}, headers={REQUEST_ID_KEY: "abc-123"})
    assert kept.headers[REQUEST_ID_KEY] == "abc-123"
    assert kept.json() == {"value": "x|abc-123"}

    replaced = http.get("/v1/echo", params={"value": "x"}, headers={REQUEST_ID_KEY: "z" * 500})
    assert len(replaced.headers[REQUEST_ID_KEY]) == 32
    fresh = http.get("/v1/echo", params={"value": "x"})
    assert fresh.headers[REQUEST_ID_KEY] != replaced.headers[REQUEST_ID_KEY]


def test_bad_input_gets_clear_errors_and_the_service_stays_up(probe_factory) -> None:  # type: ignore[no-untyped-def]
    _, port, _, _ = probe_factory(LOOPLINE_PROBE_MAX_REQUEST_BYTES="1000")
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)

    invalid = http.post("/v1/items", json={"name": "", "count": -1})
    assert invalid.status_code == 400
    error = invalid.json()["error"]
    assert error["code"] == "INVALID_ARGUMENT"
    assert set(error["details"]) == {"body.name", "body.count"}

    not_json = http.post("/v1/items", content=b"{not json", headers={"content-type": "application/json"})
    assert not_json.status_code == 400
    assert not_json.json()["error"]["code"] == "INVALID_ARGUMENT"

    too_large = http.post("/v1/items", content=b"x" * 5000, headers={"content-type": "application/json"})
    assert too_large.status_code == 413
    assert too_large.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"

    # A chunked body declares no length: the limit still holds while it streams in.
    chunked = http.post(
        "/v1/items", content=iter([b"x" * 600, b"x" * 600]), headers={"content-type": "application/json"}
    )
    assert chunked.status_code == 413

    unknown = http.get("/v1/nothing-here")
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "NOT_FOUND"

    wrong_method = http.delete("/v1/items")
    assert wrong_method.status_code == 405
    assert "error" in wrong_method.json()

    assert http.post("/v1/items", json={"name": "ok", "count": 1}).json() == {"name": "ok", "count": 1}
