"""Streaming ingestion from a real broker: aggregates equal the batch computation, also across a crash."""

from __future__ import annotations

import json
import math
import re
import signal
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pandas as pd
import pytest
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from kafka.structs import OffsetAndMetadata
from loopline_features.aggregates import Aggregate, StreamView, batch_rows, latest_rows
from loopline_features.backend import FeastBackend
from loopline_features.demo import DemoConfig, TransactionGenerator, to_event
from loopline_features.ingest import StreamState

from loopline.events.v1 import workload_pb2
from loopline_common.kafka_io import content_type
from tests.features.clients import GrpcClient
from tests.features.conftest import FEATURE_REPO, Service, make_store, start_service
from tests.helpers import Broker

LATENESS_SECONDS = 600.0


def _events(n: int) -> pd.DataFrame:
    """`n` live transactions over the last ~40 minutes, for 30 customers and 8 merchants."""
    generator = TransactionGenerator(DemoConfig(customers=30, merchants=8, seed=3, fraud_episode_rate=0.02))
    start = time.time() - 2400
    rows = []
    for txn in generator.live(start, n / 2400):
        rows.append(txn)
        if len(rows) == n:
            break
    frame = pd.DataFrame(rows)
    frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], unit="s", utc=True)
    return frame


def _publish(producer: KafkaProducer, topic: str, frame: pd.DataFrame) -> None:
    for txn in frame.to_dict("records"):
        event = to_event({**txn, "event_timestamp": txn["event_timestamp"].timestamp()})
        producer.send(topic, key=txn["customer_id"].encode(), value=event.SerializeToString(),
                      headers=[("content-type", content_type(workload_pb2.WorkloadEvent))])
    producer.flush(30)


def _metric(service: Service, name: str, labels: str = "") -> float:
    text = httpx.get(f"{service.http}/metrics", timeout=10).text
    pattern = re.compile(rf"^{re.escape(name)}{re.escape(labels)} ([0-9.e+]+)$", re.M)
    match = pattern.search(text)
    return float(match.group(1)) if match else 0.0


def _wait(condition: Callable[[], bool], timeout: float, what: str, detail: Callable[[], object] = str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout}s {detail()}")
        time.sleep(0.2)


def _move_offsets(bootstrap: str, old_group: str, new_group: str) -> int:
    """Commit `old_group`'s committed offsets for `new_group`; returns how many records they cover."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        listed = admin.list_group_offsets(old_group)[old_group]
        offsets = {tp: o.offset for tp, o in listed.items() if o.offset >= 0}
        admin.alter_group_offsets(new_group, {tp: OffsetAndMetadata(o, "", -1) for tp, o in offsets.items()})
    finally:
        admin.close()
    return sum(offsets.values())


def test_stream_aggregates_equal_batch_across_a_crash(broker: Broker, tmp_path_factory: pytest.TempPathFactory
                                                      ) -> None:
    store = make_store("sqlite", tmp_path_factory.mktemp("stream"))
    topic = f"workload-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    admin.create_topics([NewTopic(topic, 3, 1)])
    admin.close()
    events = _events(600)
    # Out of order within the lateness bound: swap neighbours; and a few duplicates (a producer retry).
    shuffled = events.sample(frac=1.0, random_state=1).sort_values(
        "event_timestamp", key=lambda s: s + pd.to_timedelta((s.index % 7) * 40, unit="s")
    )
    first, second = shuffled.iloc[:300], shuffled.iloc[300:]
    duplicates = events.iloc[::50]
    too_late = events.iloc[[0]].assign(
        event_id="too-late", event_timestamp=events["event_timestamp"].max() - timedelta(seconds=LATENESS_SECONDS * 3)
    )
    settings = {"kafka_bootstrap": broker.bootstrap, "ingest_topic": topic, "ingest_group": f"g-{topic}",
                "allowed_lateness_seconds": str(LATENESS_SECONDS), "push_interval_seconds": "0.1",
                "offline_flush_seconds": "1", "max_poll_interval_ms": "10000"}
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
    service = start_service(store, **settings)
    try:
        _publish(producer, topic, first)
        applied = 'loopline_features_ingest_events_total'
        _wait(lambda: _metric(service, applied, '{outcome="applied"}') >= 100, 90, "100 events applied")
        service.proc.stop(signal.SIGKILL)  # crash mid-stream
        _publish(producer, topic, pd.concat([second, duplicates]))
        # The broker here (noida-db) never expires a killed member's session, so a restart in the same
        # group would wait forever for a rebalance. The restarted ingester joins a fresh group that starts
        # exactly at the offsets the crashed one committed: what a same-group restart resumes from.
        committed = _move_offsets(broker.bootstrap, settings["ingest_group"], f"{settings['ingest_group']}-2")
        assert committed > 0, committed  # the crashed ingester had made progress; the rest comes after
        settings["ingest_group"] += "-2"
        service = start_service(store, **settings)
        backend = FeastBackend(repo_dir=FEATURE_REPO, data_dir=store.data_dir, environment="embedded",
                               max_entities=1000, store_timeout_seconds=1.0)
        backend.reload()
        numeric = events.assign(card_not_present=events["card_not_present"].astype("float64"))
        expected = {view.name: (view, latest_rows(view, numeric)) for view in backend.stream_views()}
        client = GrpcClient(service.grpc)

        mismatch: list[object] = []

        def online_equals_batch() -> bool:
            mismatch.clear()
            for view, rows in expected.values():
                refs = [f"{view.name}:{a.feature}" for a in view.aggregates]
                keys = rows[view.join_key].tolist()
                got = client.online(entities=[{view.join_key: k} for k in keys], features=refs)
                for i, row in enumerate(rows.itertuples(index=False)):
                    for j, agg in enumerate(view.aggregates):
                        value = got.values[i][j]
                        want = getattr(row, agg.feature)
                        if value is None or not math.isclose(value, want, rel_tol=1e-9, abs_tol=1e-9):
                            mismatch.append((view.name, keys[i], agg.feature, value, want))
                            return False
                    if abs(got.event_times[i][0] - row.event_timestamp.timestamp()) >= 1.0:
                        mismatch.append((view.name, keys[i], "event_time", got.event_times[i][0], row.event_timestamp))
                        return False
            return True

        _wait(online_equals_batch, 90, "online aggregates equal to the batch computation",
              lambda: (mismatch, service.proc.output()[-3000:]))
        # An event far behind the watermark (now that every other event was applied) is dropped, counted,
        # and changes nothing.
        _publish(producer, topic, too_late)
        _wait(lambda: _metric(service, "loopline_features_ingest_events_total", '{outcome="late"}') >= 1, 60,
              "the too-late event dropped")
        assert online_equals_batch(), mismatch

        offline = store.data_dir / "offline" / "customer_txn_24h.parquet"
        _, rows = expected["customer_txn_24h"]

        def offline_has_latest() -> bool:
            history = pd.read_parquet(offline)
            if history.empty:
                return False
            newest = history.sort_values(["event_timestamp", "created"]).groupby("customer_id").last()
            return all(
                k in newest.index and newest.loc[k, "txn_count_24h"] == c
                for k, c in zip(rows["customer_id"], rows["txn_count_24h"], strict=True)
            )

        _wait(offline_has_latest, 60, "the offline history holding the newest rows")
        metrics = httpx.get(f"{service.http}/metrics", timeout=10).text
        assert 'loopline_features_feature_freshness_seconds{feature_view="customer_txn_1h"}' in metrics
        assert "loopline_features_ingest_event_lag_seconds_count" in metrics
        client.close()
    finally:
        producer.close()
        service.stop()


def test_state_equals_batch_for_disordered_and_duplicated_events(tmp_path: Path) -> None:
    """The ingester's state (no broker here) gives the batch computation's newest rows, whatever the order."""
    views = [
        StreamView("c1h", "p1", "transactions", "customer_id", 3600,
                   (Aggregate("n", "count", None, True), Aggregate("s", "sum", "amount", False),
                    Aggregate("x", "max", "amount", False))),
        StreamView("m7d", "p2", "transactions", "merchant_id", 7 * 86400,
                   (Aggregate("n", "count", None, True), Aggregate("c", "mean", "card_not_present", False))),
    ]
    events = _events(400)
    state = StreamState(path=tmp_path / "state.db", views=views, allowed_lateness_seconds=LATENESS_SECONDS)
    disordered = events.sample(frac=1.0, random_state=2).sort_values(
        "event_timestamp", key=lambda s: s + pd.to_timedelta((s.index % 5) * 60, unit="s")
    )
    outcomes = [
        state.apply(to_event({**t, "event_timestamp": t["event_timestamp"].timestamp()}), now_us=0)[0]
        for t in pd.concat([disordered, events.iloc[::10]]).to_dict("records")
    ]
    assert outcomes.count("applied") == 400 and outcomes.count("duplicate") == 40
    queued = {(v, e): (ts, json.loads(p)) for v, e, ts, p in
              state.conn.execute("SELECT view, entity, ts, payload FROM outbox ORDER BY seq")}
    numeric = events.assign(card_not_present=events["card_not_present"].astype("float64"))
    for view in views:
        for row in latest_rows(view, numeric).itertuples(index=False):
            ts, payload = queued[(view.name, getattr(row, view.join_key))]
            assert abs(ts - row.event_timestamp.value // 1000) <= 1  # microseconds
            for agg in view.aggregates:
                assert math.isclose(payload[agg.feature], getattr(row, agg.feature), rel_tol=1e-9, abs_tol=1e-9)


def test_event_time_window_edges() -> None:
    """The batch computation counts (T - window, T]: an event exactly one window old is out."""
    view = StreamView("v", "p", "transactions", "customer_id", 3600,
                      (Aggregate("n", "count", None, True), Aggregate("s", "sum", "amount", False)))
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    events = pd.DataFrame({
        "customer_id": ["a", "a", "a", "a"],
        "event_timestamp": pd.to_datetime([t0, t0 + timedelta(minutes=30), t0 + timedelta(hours=1),
                                           t0 + timedelta(hours=1)], utc=True),
        "amount": [1.0, 2.0, 4.0, 8.0],
    })
    rows = batch_rows(view, events)
    assert rows["n"].tolist() == [1, 2, 3]  # at t0+1h: the t0 event is out, both events at t0+1h are in
    assert rows["s"].tolist() == [1.0, 3.0, 14.0]
