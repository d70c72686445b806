"""The monitoring service as a real process on the session's Kafka-wire broker: the prediction log in
(produced with the shared EventProducer), drift events out, restarts, poison records, the canary
comparison, reports and metrics over both transports."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from kafka import KafkaProducer

from loopline.events.v1 import drift_pb2, predictions_pb2
from loopline.monitoring.v1 import monitoring_pb2
from loopline_common.kafka_io import content_type
from tests.helpers import Broker
from tests.monitoring import data
from tests.monitoring.service import (
    Monitoring,
    Topics,
    publish,
    read_all,
    start_monitoring,
    wait_until,
    write_profile,
)

CHAMPION, CHALLENGER, SHADOW = (
    predictions_pb2.TRACK_CHAMPION, predictions_pb2.TRACK_CHALLENGER, predictions_pb2.TRACK_SHADOW,
)
WINDOW = 500
POLICY = {"default": {"window_records": WINDOW, "window_seconds": 0, "clear_windows": 2, "cooldown_seconds": 86400}}
SHIFT = data.Shift(mean=0.8, features=("f00", "f01", "f02", "f03", "f04"),
                   category_p=np.array([0.1, 0.1, 0.6, 0.1, 0.1]))


@pytest.fixture(scope="module")
def setup(broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    folder = tmp_path_factory.mktemp("monitoring")
    profiles = folder / "profiles"
    for model in ("fraud-drift", "fraud-restart", "fraud-poison"):
        write_profile(profiles, data.reference_profile(model, 1))
    for version in (1, 2):
        write_profile(profiles, data.reference_profile("fraud-canary", version))
    policy = folder / "policy.json"
    policy.write_text(json.dumps(POLICY))
    return {"folder": folder, "profiles": profiles, "policy": policy}


def env_for(broker: Broker, setup: dict[str, object], topics: Topics, state: Path, **extra: str) -> dict[str, str]:
    return {
        "LOOPLINE_MONITORING_KAFKA_BOOTSTRAP": broker.bootstrap,
        "LOOPLINE_MONITORING_STATE_DIR": str(state),
        "LOOPLINE_MONITORING_PROFILE_DIR": str(setup["profiles"]),
        "LOOPLINE_MONITORING_POLICY_FILE": str(setup["policy"]),
        "LOOPLINE_MONITORING_PREDICTIONS_TOPIC": topics.predictions,
        "LOOPLINE_MONITORING_DRIFT_TOPIC": topics.drift,
        "LOOPLINE_MONITORING_CONSUMER_GROUP": f"monitoring-{uuid.uuid4().hex[:8]}",
        **extra,
    }


@pytest.fixture(scope="module")
def topics(broker: Broker) -> Topics:
    return Topics.create(broker.bootstrap)


@pytest.fixture(scope="module")
def service(broker: Broker, setup: dict[str, object], topics: Topics) -> Iterator[Monitoring]:
    state = Path(str(setup["folder"])) / "state"
    monitoring = start_monitoring(env_for(broker, setup, topics, state))
    yield monitoring
    monitoring.close()


def status(service: Monitoring, model: str) -> monitoring_pb2.DriftStatus:
    response = service.stub.GetDriftStatus(monitoring_pb2.GetDriftStatusRequest(model_name=model), timeout=10)
    return response.statuses[0]


def test_a_shift_in_the_log_raises_one_drift_event_with_its_evidence(
    broker: Broker, service: Monitoring, topics: Topics
) -> None:
    model = "fraud-drift"
    calm = data.batches(model=model, version=1, n=4 * WINDOW, batch_size=100, seed=1, start_time=1_800_000_000)
    shifted = data.batches(model=model, version=1, n=6 * WINDOW, batch_size=100, seed=2, shift=SHIFT,
                           start_time=1_800_001_000)
    publish(broker.bootstrap, topics.predictions, [*calm, *shifted], key=model)

    final = wait_until(lambda: (s := status(service, model)).windows_closed == 10 and s, what="10 windows closed")
    assert final.state == monitoring_pb2.ALERT_STATE_DRIFTING
    assert final.latest.dataset_drift and final.latest.window.count == WINDOW
    # acknowledged by Kafka, then read back: exactly one event for six drifted windows
    wait_until(lambda: service.metric("loopline_monitoring_kafka_produced_total", topic=topics.drift) >= 1,
               what="the event acknowledged")
    events = [drift_pb2.DriftDetected.FromString(r.value) for r in read_all(broker.bootstrap, topics.drift)
              if r.key == model.encode()]
    assert len(events) == 1
    event = events[0]
    assert (event.model_name, event.model_version, event.track) == (model, 1, CHAMPION)
    assert event.window.count == WINDOW and event.drifted_share >= event.drifted_share_threshold
    drifted = {f.feature for f in event.features if f.drifted}
    assert {"f00", "f01", "f02", "f03", "f04", "merchant_category"} <= drifted
    assert all(f.method in ("ks", "chi2") and f.HasField("p_value") for f in event.features)
    assert event.meta.producer == "monitoring" and event.meta.event_id

    windows = service.stub.ListDriftWindows(
        monitoring_pb2.ListDriftWindowsRequest(model_name=model, model_version=1, track=CHAMPION, page_size=100),
        timeout=10,
    ).windows
    assert [w.dataset_drift for w in reversed(windows)] == [False] * 4 + [True] * 6
    # the same over HTTP
    body = service.http.get(f"/v1/models/{model}/versions/1/tracks/champion/windows").json()
    assert [w["dataset_drift"] for w in body["windows"]] == [w.dataset_drift for w in windows]
    # gauges per model/version/track/feature/method
    labels = {"model": model, "version": "1", "track": "champion"}
    assert service.metric("loopline_monitoring_feature_drifted", **labels, feature="f00", method="ks") == 1
    assert service.metric("loopline_monitoring_drift_score", **labels, feature="f00", method="psi") > 0.1
    assert service.metric("loopline_monitoring_drift_alert", **labels) == 1
    assert service.metric("loopline_monitoring_drift_events_total", **labels) == 1


def test_the_report_is_served_over_http_and_written_by_the_cli(service: Monitoring, tmp_path: Path) -> None:
    model = "fraud-drift"
    wait_until(lambda: status(service, model).windows_closed >= 10, what="the drift test's windows")
    page = service.http.get(f"/v1/models/{model}/report")
    assert page.status_code == 200 and "Drift report: fraud-drift" in page.text
    images = [part.split('"')[0] for part in page.text.split('src="')[1:]]
    assert images and all(i.startswith(f"/v1/models/{model}/report/files/") for i in images)
    png = service.http.get(images[0])
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG") and png.headers["content-type"] == "image/png"
    assert service.http.get(f"/v1/models/{model}/report/files/..%2Fsecret.png").status_code in (400, 404)

    out = tmp_path / "report.html"
    done = subprocess.run(
        [str(Path(sys.executable).parent / "loopline"), "drift", "report", model, "--target", service.grpc_target,
         "--out", str(out)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    html = out.read_text()
    assert "data:image/png;base64," in html and "reference vs current" in html and "Drift over time" in html
    missing = subprocess.run(
        [str(Path(sys.executable).parent / "loopline"), "drift", "report", "no-such-model", "--target",
         service.grpc_target, "--out", str(tmp_path / "x.html")],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert missing.returncode == 1 and "NOT_FOUND" in missing.stderr


def test_get_canary_analysis_on_two_tracks_with_known_differences(
    broker: Broker, service: Monitoring, topics: Topics
) -> None:
    model = "fraud-canary"
    start = 1_900_000_000.0
    champion = list(data.batches(model=model, version=1, n=1000, seed=3, start_time=start, prefix="c",
                                 latency_us=2_000, error_every=50))
    challenger = list(data.batches(model=model, version=2, n=400, seed=4, track=CHALLENGER, start_time=start,
                                   prefix="n", latency_us=20_000, error_every=10, step_seconds=0.025,
                                   shift=data.Shift(mean=1.5, features=("f00",))))
    # shadow: the challenger scored on copies of the champion's requests (same request ids); it agrees on
    # the decision for 9 requests out of 10
    shadow = predictions_pb2.PredictionLogBatch(batch_id="shadow")
    disagreements = 0
    for batch in champion:
        for record in batch.records:
            if record.status != "ok":
                continue
            copy = shadow.records.add()
            copy.CopyFrom(record)
            copy.track, copy.model_version = SHADOW, 2
            p = record.outputs[data.OUTPUT]
            if len(shadow.records) % 10 == 0 and p != 0.5:
                copy.outputs[data.OUTPUT] = 1.0 - p  # the other decision
                disagreements += 1
    publish(broker.bootstrap, topics.predictions, [*champion, *challenger, shadow], key=model)

    def analysis() -> monitoring_pb2.GetCanaryAnalysisResponse | None:
        response = service.stub.GetCanaryAnalysis(
            monitoring_pb2.GetCanaryAnalysisRequest(model_name=model, window_seconds=3600), timeout=10
        )
        return response if response.window.count == 1000 + 400 + len(shadow.records) else None

    response = wait_until(analysis, what="every canary record")
    tracks = {t.track: t for t in response.tracks}
    assert set(tracks) == {CHAMPION, CHALLENGER, SHADOW}
    assert (tracks[CHAMPION].count, tracks[CHAMPION].errors, tracks[CHAMPION].version) == (1000, 20, 1)
    assert tracks[CHAMPION].error_rate == pytest.approx(0.02)
    assert (tracks[CHALLENGER].count, tracks[CHALLENGER].errors, tracks[CHALLENGER].version) == (400, 40, 2)
    assert tracks[CHALLENGER].error_rate == pytest.approx(0.10)
    # Latencies as the records carry them (written above), not timed here: the percentiles of that data.
    assert 0.002 <= tracks[CHAMPION].latency.p50 <= tracks[CHAMPION].latency.p99 <= 0.0025
    assert 0.020 <= tracks[CHALLENGER].latency.p50 <= tracks[CHALLENGER].latency.p99 <= 0.0205
    assert (response.champion_version, response.challenger_version) == (1, 2)
    assert response.prediction_psi > 0.25  # the challenger's scores moved with its shifted input
    assert response.shadow.pairs == 980 and disagreements == 98
    assert response.shadow.agreement_rate == pytest.approx(1 - 98 / 980)
    # the window it states: the span of the records it covers
    assert response.window.start.ToNanoseconds() == champion[0].records[0].time.ToNanoseconds()
    assert response.window.end.ToNanoseconds() == champion[-1].records[-1].time.ToNanoseconds()

    body = service.http.get(f"/v1/models/{model}/canary", params={"window_seconds": 3600}).json()
    assert body["window"]["count"] == str(response.window.count)
    assert body["prediction_psi"] == pytest.approx(response.prediction_psi)
    wait_until(lambda: service.metric("loopline_monitoring_canary_error_rate", model=model, track="challenger",
                                      version="2") == pytest.approx(0.10), what="the canary gauges")
    # a narrower window covers fewer records, and says so
    narrow = service.stub.GetCanaryAnalysis(
        monitoring_pb2.GetCanaryAnalysisRequest(model_name=model, window_seconds=2), timeout=10
    )
    assert 0 < narrow.window.count < response.window.count
    missing = service.http.get("/v1/models/nobody/canary")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "NOT_FOUND"


def test_a_poison_record_goes_to_the_dead_letter_topic_and_the_partition_moves_on(
    broker: Broker, service: Monitoring, topics: Topics
) -> None:
    model = "fraud-poison"
    raw = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    try:
        header = [("content-type", content_type(predictions_pb2.PredictionLogBatch))]
        raw.send(topics.predictions, key=model.encode(), value=b"\xff\xfe not protobuf", headers=header).get(10)
        nameless = predictions_pb2.PredictionLogBatch(batch_id="nameless")
        nameless.records.add(request_id="r", model_version=1)
        raw.send(topics.predictions, key=model.encode(), value=nameless.SerializeToString(), headers=header).get(10)
        json_header = [("content-type", b"application/json")]
        raw.send(topics.predictions, key=model.encode(), value=b"{}", headers=json_header).get(10)
    finally:
        raw.close()
    # good records behind the poison, on the same partition (same key)
    publish(broker.bootstrap, topics.predictions, data.batches(model=model, version=1, n=600, batch_size=200),
            key=model)
    wait_until(lambda: status(service, model).windows_closed == 1 and status(service, model).open_window_count == 100,
               what="the good records processed")
    dead = wait_until(lambda: (d := [r for r in read_all(broker.bootstrap, topics.predictions + ".dlq")
                                     if r.key == model.encode()]) and len(d) == 3 and d, what="3 dead letters")
    reasons = sorted(dict(r.headers)["loopline-dlq-reason"].decode() for r in dead)
    assert reasons == ["rejected", "undecodable", "wrong_type"]


def test_a_restart_neither_loses_nor_double_counts_a_window(
    broker: Broker, setup: dict[str, object], tmp_path: Path
) -> None:
    model = "fraud-restart"
    topics = Topics.create(broker.bootstrap)
    batches = list(data.batches(model=model, version=1, n=7 * WINDOW + 200, batch_size=100, prefix="rs"))
    publish(broker.bootstrap, topics.predictions, batches, key=model)
    env = env_for(broker, setup, topics, tmp_path / "state")
    # The first run dies right after the state of its 12th batch was committed, before Kafka's offsets were.
    first = start_monitoring({**env, "LOOPLINE_MONITORING_TEST_CRASH_AFTER_BATCHES": "12"}, ready=False)
    assert first.process.proc.wait(60) == 3
    first.close()
    second = start_monitoring(env)
    try:
        final = wait_until(lambda: (s := status(second, model)).windows_closed == 7 and s.open_window_count == 200
                           and s, what="all records processed after the restart")
        windows = second.stub.ListDriftWindows(
            monitoring_pb2.ListDriftWindowsRequest(model_name=model, model_version=1, track=CHAMPION), timeout=10
        ).windows
        assert [(w.sequence, w.window.count) for w in reversed(windows)] == [(i, WINDOW) for i in range(1, 8)]
        assert final.windows_closed == 7
        # what the first run had recorded was delivered again, and recognised
        assert second.metric("loopline_monitoring_records_total", model=model, outcome="duplicate") > 0
        canary = second.stub.GetCanaryAnalysis(
            monitoring_pb2.GetCanaryAnalysisRequest(model_name=model, window_seconds=86400), timeout=10
        )
        assert canary.window.count == 7 * WINDOW + 200
        # and a producer retry of batches already counted changes nothing
        publish(broker.bootstrap, topics.predictions, batches[:5], key=model)
        wait_until(lambda: second.metric("loopline_monitoring_records_total", model=model, outcome="duplicate")
                   >= 500 + 100, what="the retried batches seen as duplicates")
        again = status(second, model)
        assert (again.windows_closed, again.open_window_count) == (7, 200)
    finally:
        assert second.close() == 0 or second.process.proc.returncode == -signal.SIGTERM
