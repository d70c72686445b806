"""The core in-process, with its real state store on disk: windows by count and time, idempotency, alerts
with hysteresis and cooldown, state that survives a new core, skew, and the wire projection."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from google.protobuf import descriptor_pb2
from google.protobuf.message import Message
from loopline_monitoring import skew, wire
from loopline_monitoring.core import MonitoringCore, ProfileCache, WindowKey
from loopline_monitoring.policy import DriftPolicy, Policies
from loopline_monitoring.profiles import OTHER
from loopline_monitoring.store import Store
from loopline_monitoring.telemetry import MonitoringMetrics

from loopline.events.v1 import drift_pb2, predictions_pb2
from loopline.monitoring.v1 import monitoring_pb2
from loopline_common.kafka_io import PoisonMessage
from loopline_common.metrics import ServiceMetrics
from tests.monitoring import data

MODEL = "fraud"
KEY = WindowKey(MODEL, 1, predictions_pb2.TRACK_CHAMPION)
SHIFT = data.Shift(mean=0.8, features=("f00", "f01", "f02", "f03", "f04"))


class Collected:
    """A publisher that keeps what it was given (the Kafka path is covered by test_service.py)."""

    def __init__(self) -> None:
        self.events: list[drift_pb2.DriftDetected] = []

    def publish(self, topic: str, message: Message, *, key: str | bytes | None) -> bool:
        assert isinstance(message, drift_pb2.DriftDetected)
        self.events.append(message)
        return True

    def flush(self, timeout: float = 10.0) -> bool:
        return True


def make_core(
    folder: Path, publisher: Collected | None = None, clock: Any = None, **policy: Any
) -> MonitoringCore:
    store = Store(folder / "state.db")
    profiles = ProfileCache(source=None, store=store)
    if store.profile(MODEL, 1) is None:
        profiles.put(MODEL, 1, data.reference_profile(MODEL, 1))
    settings = {"window_records": 400, "window_seconds": 0, **policy}
    return MonitoringCore(
        store=store, profiles=profiles, policies=Policies(DriftPolicy.model_validate(settings)),
        metrics=MonitoringMetrics(ServiceMetrics("monitoring")), publisher=publisher,
        **({"clock": clock} if clock else {}),
    )


def feed(core: MonitoringCore, batches: Any) -> None:
    projection = wire.projection()
    for batch in batches:
        core.ingest(projection.FromString(batch.SerializeToString()), fallback_time=0.0)


def test_count_windows_are_exact_and_records_are_counted_once(tmp_path: Path) -> None:
    core = make_core(tmp_path)
    batches = list(data.batches(model=MODEL, version=1, n=1000, batch_size=130, prefix="a"))
    feed(core, batches)
    feed(core, batches[:3])  # delivered again: nothing changes
    status = core.drift_status(model_name=MODEL).statuses[0]
    assert status.windows_closed == 2 and status.open_window_count == 200
    windows = core.drift_windows(model_name=MODEL, version=1, track=KEY.track, page_size=10).windows
    assert [(w.sequence, w.window.count) for w in windows] == [(2, 400), (1, 400)]


def test_time_windows_close_on_event_time_and_on_the_ticker(tmp_path: Path) -> None:
    wall = [1300.0]  # the service's clock, moved by the test
    core = make_core(tmp_path, clock=lambda: wall[0], window_records=10_000, window_seconds=60,
                     min_window_records=50, window_lateness_seconds=5)
    # 300 records one second apart: windows [0, 60), [60, 120), ... close when a later record arrives
    feed(core, data.batches(model=MODEL, version=1, n=300, step_seconds=1.0, start_time=1000.0, prefix="t"))
    windows = core.drift_windows(model_name=MODEL, version=1, track=KEY.track, page_size=10).windows
    assert [w.window.count for w in reversed(windows)] == [60, 60, 60, 60]
    assert core.drift_status(model_name=MODEL).statuses[0].open_window_count == 60
    core.tick(now=1304.0)  # within the lateness: stays open
    assert core.drift_status(model_name=MODEL).statuses[0].windows_closed == 4
    core.tick(now=1306.0)  # the span and the lateness passed, and nothing arrived since: closed
    assert core.drift_status(model_name=MODEL).statuses[0].windows_closed == 5


def test_a_backlog_read_late_still_makes_full_time_windows(tmp_path: Path) -> None:
    wall = [50_000.0]  # long after the records' event times, as after an outage
    core = make_core(tmp_path, clock=lambda: wall[0], window_records=10_000, window_seconds=60,
                     min_window_records=50, window_lateness_seconds=5)
    for batch in data.batches(model=MODEL, version=1, n=300, batch_size=20, step_seconds=1.0, start_time=1000.0):
        feed(core, [batch])
        wall[0] += 1.0  # records keep arriving: the ticker must not cut windows short
        core.tick()
    counts = [w.window.count for w in core.history(MODEL)[KEY]]
    assert counts == [60, 60, 60, 60]


def test_one_shift_makes_one_event_with_hysteresis_and_cooldown(tmp_path: Path) -> None:
    events = Collected()
    core = make_core(tmp_path, events, clear_windows=2, cooldown_seconds=10_000)
    t = 5000.0
    for n, shift in [(1200, None), (2000, SHIFT), (1200, None), (800, SHIFT)]:
        feed(core, data.batches(model=MODEL, version=1, n=n, shift=shift, start_time=t, step_seconds=1.0))
        t += n
    history = [w.dataset_drift for w in core.history(MODEL)[KEY]]
    assert history == [False] * 3 + [True] * 5 + [False] * 3 + [True] * 2
    # the first shift raised the alert once; it cleared after two calm windows; the second shift came
    # within the cooldown, so it raised the alert without a second event
    assert len(events.events) == 1
    event = events.events[0]
    assert event.model_name == MODEL and event.model_version == 1 and event.track == KEY.track
    assert event.window.count == 400 and event.drifted_share >= event.drifted_share_threshold == 0.5
    drifted = {f.feature for f in event.features if f.drifted}
    assert {"f00", "f01", "f02", "f03", "f04"} <= drifted
    assert all(f.threshold > 0 for f in event.features)
    status = core.drift_status(model_name=MODEL).statuses[0]
    assert status.state == monitoring_pb2.ALERT_STATE_DRIFTING
    assert core.metrics.suppressed.labels(MODEL, "1", "champion")._value.get() == 1


def test_after_the_cooldown_a_new_shift_is_a_new_event(tmp_path: Path) -> None:
    events = Collected()
    core = make_core(tmp_path, events, clear_windows=1, cooldown_seconds=500)
    t = 0.0
    for n, shift in [(400, SHIFT), (400, None), (800, SHIFT)]:
        feed(core, data.batches(model=MODEL, version=1, n=n, shift=shift, start_time=t, step_seconds=1.0))
        t += n
    assert len(events.events) == 2
    assert len({e.meta.event_id for e in events.events}) == 2


def test_state_survives_a_new_core_on_the_same_store(tmp_path: Path) -> None:
    events = Collected()
    core = make_core(tmp_path, events)
    batches = list(data.batches(model=MODEL, version=1, n=1500, batch_size=100, shift=SHIFT, prefix="s"))
    feed(core, batches[:9])
    again = make_core(tmp_path, events)  # as after a restart
    feed(again, batches[5:])  # 5..8 are delivered a second time
    status = again.drift_status(model_name=MODEL).statuses[0]
    assert status.windows_closed == 3 and status.open_window_count == 300
    assert status.state == monitoring_pb2.ALERT_STATE_DRIFTING
    assert len(events.events) == 1  # the alert state came back too: no second event
    canary = again.canary_analysis(model_name=MODEL, window_seconds=10_000)
    assert canary.window.count == 1500


def test_a_batch_without_one_usable_record_is_poison(tmp_path: Path) -> None:
    core = make_core(tmp_path)
    batch = predictions_pb2.PredictionLogBatch(batch_id="bad")
    batch.records.add(request_id="x", model_version=1)  # no model name
    with pytest.raises(PoisonMessage):
        feed(core, [batch])
    feed(core, [predictions_pb2.PredictionLogBatch(batch_id="empty")])  # empty: nothing to do, no error


def test_the_wire_projection_matches_the_contract() -> None:
    contract = descriptor_pb2.DescriptorProto()
    predictions_pb2.PredictionRecord.DESCRIPTOR.CopyToProto(contract)
    projected = descriptor_pb2.DescriptorProto()
    record = wire.projection().DESCRIPTOR.fields_by_name["records"].message_type
    record.CopyToProto(projected)
    assert wire.projection().DESCRIPTOR.full_name == predictions_pb2.PredictionLogBatch.DESCRIPTOR.full_name
    as_fields = {f.name: (f.number, f.label, f.type) for f in contract.field}
    assert as_fields == {f.name: (f.number, f.label, f.type) for f in projected.field}
    entry = {f.name: f for f in next(m for m in projected.nested_type if m.name == "FeaturesEntry").field}
    assert entry["value"].type == descriptor_pb2.FieldDescriptorProto.TYPE_BYTES
    batch = next(data.batches(model=MODEL, version=1, n=3))
    batch.records[0].features["count"].int64_value = -7
    batch.records[0].features["flag"].bool_value = True
    batch.records[0].features["none"].SetInParent()
    parsed = wire.projection().FromString(batch.SerializeToString())
    features = parsed.records[0].features
    numbers, strings = wire.decode_numbers([features["f00"], features["count"], features["flag"], features["none"],
                                            features["merchant_category"], None])
    assert numbers[:3].tolist() == [batch.records[0].features["f00"].double_value, -7.0, 1.0]
    assert np.isnan(numbers[3:]).all() and strings == 1
    label = batch.records[0].features["merchant_category"].string_value
    assert wire.decode_label(features["merchant_category"]) == label


def test_skew_is_found_when_served_values_were_tampered_with_and_not_otherwise() -> None:
    rng = np.random.default_rng(8)
    offline = [{"amount": float(a), "merchant_category": str(c)}
               for a, c in zip(rng.gamma(2.0, 30.0, 600), rng.choice(data.CATEGORIES, 600), strict=True)]
    honest = [dict(row) for row in offline]
    # float32 round trips are the same value, not skew
    honest = [{**row, "amount": float(np.float32(row["amount"]))} for row in honest]
    tampered = [dict(row) for row in offline]
    for row in tampered[::4]:
        row["amount"] = row["amount"] * 1.5  # e.g. a stale or wrongly scaled online value
    for row in tampered[::10]:
        row["merchant_category"] = "online"

    def compare(served: list[dict[str, skew.Value]]) -> dict[str, monitoring_pb2.FeatureSkew]:
        counters: dict[str, skew.FeatureCounters] = {}
        skew.fold(counters, served, offline)
        return {f.feature: f for f in skew.report(counters)}

    clean = compare(honest)
    assert clean["amount"].mismatch_rate == 0 and clean["merchant_category"].mismatch_rate == 0
    assert clean["amount"].distance < 1e-6 and clean["merchant_category"].distance == 0
    found = compare(tampered)
    assert found["amount"].mismatch_rate == pytest.approx(150 / 600)
    assert 0 < found["merchant_category"].mismatch_rate <= 60 / 600
    assert found["amount"].distance > 0.05
    missing = {}
    skew.fold(missing, honest[:10], [None] * 10)
    assert missing["amount"].offline_missing == 10 and missing["amount"].compared == 0


def test_skew_sampling_is_deterministic_in_the_request_id() -> None:
    ids = [f"req-{i}" for i in range(20_000)]
    chosen = [i for i in ids if skew.sampled(i, 0.05)]
    assert chosen == [i for i in ids if skew.sampled(i, 0.05)]
    assert 0.04 < len(chosen) / len(ids) < 0.06
    assert not skew.sampled("x", 0.0) and skew.sampled("x", 1.0)


def test_a_text_feature_fed_as_its_code_is_read_as_its_label(tmp_path: Path) -> None:
    """Inference feeds a text feature to the model as its vocabulary code and logs that number; the profile
    carries the model's input vocabulary, so monitoring reads the code back as the label."""
    core = make_core(tmp_path)
    vocabulary = sorted(data.CATEGORIES)
    profile = data.reference_profile(MODEL, 2)
    for feature in profile.features:
        if feature.name == data.CATEGORICAL[0]:
            feature.categorical.input_vocabulary.extend(vocabulary)
    core.profiles.put(MODEL, 2, profile)
    batches = list(data.batches(model=MODEL, version=2, n=400, prefix="codes"))
    labels = []
    for batch in batches:
        for record in batch.records:
            value = record.features[data.CATEGORICAL[0]]
            labels.append(value.string_value)
            value.double_value = float(vocabulary.index(value.string_value))  # as inference logs it
    feed(core, batches)
    window = core.drift_windows(model_name=MODEL, version=2, track=KEY.track, page_size=1).windows[0]
    histogram = next(h for h in window.histograms if h.feature == data.CATEGORICAL[0])
    current = dict(zip(histogram.categories, histogram.current, strict=True))
    assert current[OTHER] == 0.0 and histogram.missing == 0
    for label in set(labels):
        assert current[label] == pytest.approx(labels.count(label) / len(labels))
    score = next(s.drift for s in window.scores if s.drift.feature == data.CATEGORICAL[0] and s.deciding)
    assert not score.drifted
    # Without the vocabulary the same number is read as the label "0", "1", ... (none of the profile's).
    part = batches[0].records[0].features[data.CATEGORICAL[0]].SerializeToString()
    assert wire.decode_label(part) == str(vocabulary.index(labels[0]))
    assert wire.decode_label(part, vocabulary) == labels[0]
