"""The demo workload generator: deterministic, learnable fraud, a working drift knob."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from kafka import KafkaConsumer
from loopline_features.demo import DemoConfig, TransactionGenerator, to_event
from loopline_features.demo_cli import stream

from loopline.events.v1 import workload_pb2
from loopline_common.kafka_io import content_type
from tests.helpers import Broker

START = datetime(2026, 3, 1, tzinfo=UTC)


def _history(**config: float) -> object:
    return TransactionGenerator(DemoConfig(customers=300, merchants=60, **config)).history(  # type: ignore[arg-type]
        START, START + timedelta(days=7)
    )


def test_same_seed_same_data_and_other_seed_other_data() -> None:
    a, b, c = _history(seed=1), _history(seed=1), _history(seed=2)
    assert a.equals(b)  # type: ignore[attr-defined]
    assert not a.equals(c)  # type: ignore[attr-defined]


def test_fraud_is_rare_bursty_and_card_not_present() -> None:
    frame = _history(seed=4)
    fraud = frame[frame["is_fraud"]]  # type: ignore[index]
    share = len(fraud) / len(frame)  # type: ignore[arg-type]
    assert 0.002 < share < 0.08
    assert fraud["card_not_present"].mean() > 0.7
    assert fraud["amount"].median() > 3 * frame[~frame["is_fraud"]]["amount"].median()  # type: ignore[index]


def test_drift_shifts_amounts_categories_and_merchants() -> None:
    base, drifted = _history(seed=5), _history(seed=5, drift=1.0)
    assert drifted["amount"].median() > 1.3 * base["amount"].median()  # type: ignore[index]
    online = ("online_retail", "gaming")
    assert drifted["merchant_category"].isin(online).mean() > base["merchant_category"].isin(online).mean()  # type: ignore[index]
    assert drifted["merchant_id"].str.startswith("N").mean() > 0.15  # type: ignore[index]
    assert not base["merchant_id"].str.startswith("N").any()  # type: ignore[index]
    with pytest.raises(ValueError, match="drift"):
        TransactionGenerator(DemoConfig(drift=2.0))


def test_events_round_trip_as_workload_events() -> None:
    txn = _history(seed=6).iloc[0].to_dict()  # type: ignore[attr-defined]
    event = to_event(txn)
    assert event.meta.event_id == txn["event_id"]
    assert event.entity_keys["customer_id"] == txn["customer_id"]
    assert event.fields["amount"].double_value == txn["amount"]
    assert event.event_time.ToDatetime(tzinfo=UTC) == txn["event_timestamp"].to_pydatetime()


def test_live_stream_publishes_workload_events(broker: Broker) -> None:
    """What `loopline demo data --stream` runs: events on the topic, typed and keyed by customer."""
    topic = f"demo-{uuid.uuid4().hex[:8]}"
    sent = stream(bootstrap=broker.bootstrap, topic=topic, config=DemoConfig(customers=20, merchants=5, seed=9),
                  rate=200.0, seconds=0, count=25)
    assert sent == 25
    consumer = KafkaConsumer(topic, bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest",
                             consumer_timeout_ms=10_000, max_poll_interval_ms=10_000)
    records = []
    for record in consumer:
        records.append(record)
        if len(records) == 25:
            break
    consumer.close()
    assert len(records) == 25
    for record in records:
        assert dict(record.headers)["content-type"] == content_type(workload_pb2.WorkloadEvent)
        event = workload_pb2.WorkloadEvent.FromString(record.value)
        assert record.key.decode() == event.entity_keys["customer_id"]
        assert event.source == "transactions" and event.fields["amount"].double_value > 0
