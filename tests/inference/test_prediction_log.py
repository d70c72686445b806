"""The prediction log on a real Kafka-wire broker: records as served, and a broker that dies under load
(requests keep succeeding, drops are counted, logging resumes when the broker is back)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as tgrpc
from kafka import KafkaConsumer

from loopline.events.v1 import predictions_pb2
from loopline_common.topics import PREDICTIONS, ensure_topics
from tests.helpers import Broker, free_port
from tests.inference.conftest import Server, start_server

X = np.random.default_rng(3).normal(size=(3, 8)).astype(np.float32)


class LogReader:
    """Reads the prediction log from the start, collecting records by request id."""

    def __init__(self, bootstrap: str) -> None:
        self.consumer = KafkaConsumer(
            PREDICTIONS, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False,
            group_id=None, consumer_timeout_ms=500,
        )
        self.records: dict[str, predictions_pb2.PredictionRecord] = {}
        self.batches = 0

    def wait_for(self, predicate, timeout: float = 40.0) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while not predicate(self.records):
            if time.monotonic() > deadline:
                raise TimeoutError(f"log has {len(self.records)} records; condition not met")
            for message in self.consumer:
                assert dict(message.headers)["content-type"].endswith(b"loopline.events.v1.PredictionLogBatch")
                batch = predictions_pb2.PredictionLogBatch.FromString(message.value)
                self.batches += 1
                assert batch.batch_id and batch.producer_instance == "test-pod"
                assert message.key == b"fraud"
                for record in batch.records:
                    self.records[record.request_id] = record
                # Under steady load the log never pauses for consumer_timeout_ms, so check as records come.
                if predicate(self.records):
                    return

    def close(self) -> None:
        self.consumer.close()


@pytest.fixture(scope="module")
def logging_server(broker: Broker, model_dir: Path) -> Iterator[Server]:
    ensure_topics(broker.bootstrap)
    server = start_server(
        model_name="fraud", model=str(model_dir / "lgbm"), kafka_bootstrap=broker.bootstrap, instance_id="test-pod",
    )
    yield server
    server.proc.stop()


def test_every_prediction_is_logged(logging_server: Server, broker: Broker) -> None:
    inp = tgrpc.InferInput("input", list(X.shape), "FP32")
    inp.set_data_from_numpy(X)
    tgrpc.InferenceServerClient(logging_server.grpc).infer("fraud", [inp], request_id="log-grpc")
    rest = httpx.post(
        f"{logging_server.base}/v2/models/fraud/infer",
        json={"id": "log-rest", "inputs": [{"name": "input", "shape": [1, 8], "datatype": "FP32",
                                             "data": X[0].tolist()}]},
    )
    assert rest.status_code == 200
    bad = httpx.post(f"{logging_server.base}/v2/models/fraud/infer",
                     json={"id": "log-bad", "inputs": [{"name": "input", "shape": [1, 2], "datatype": "FP32",
                                                         "data": [1, 2]}]})
    assert bad.status_code == 400
    reader = LogReader(broker.bootstrap)
    try:
        reader.wait_for(lambda r: {"log-grpc.0", "log-grpc.2", "log-rest", "log-bad"} <= set(r))
    finally:
        reader.close()
    record = reader.records["log-grpc.2"]
    assert (record.model_name, record.model_version, record.track) == ("fraud", 1, predictions_pb2.TRACK_CHAMPION)
    assert record.protocol == "grpc" and record.status == "ok" and record.latency_us > 0
    assert record.time.seconds > 1_700_000_000
    assert sorted(record.features) == [f"f{i}" for i in range(8)]
    assert record.features["f3"].double_value == pytest.approx(float(X[2, 3]))
    assert set(record.outputs) == {"label", "probabilities_0", "probabilities_1"}
    assert record.outputs["probabilities_0"] + record.outputs["probabilities_1"] == pytest.approx(1.0, abs=1e-6)
    assert reader.records["log-rest"].protocol == "rest"
    failed = reader.records["log-bad"]
    assert failed.status == "INVALID_ARGUMENT" and not failed.outputs


def metric(server: Server, name: str) -> float:
    total = 0.0
    for line in httpx.get(f"{server.base}/metrics").text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_broker_down_under_load(tmp_path: Path, model_dir: Path) -> None:
    broker = Broker(data_dir=tmp_path / "kafka", port=free_port())
    broker.start()
    ensure_topics(broker.bootstrap)
    server = start_server(
        model_name="fraud", model=str(model_dir / "lgbm"), kafka_bootstrap=broker.bootstrap, instance_id="test-pod",
        producer_buffer="20", log_flush_seconds="0.02",
        producer_delivery_timeout_seconds="3",
    )
    stop = threading.Event()
    outcomes: list[int] = []
    phase = {"name": "before"}

    def load() -> None:
        with httpx.Client(base_url=server.base, timeout=30) as client:
            n = 0
            deadline = time.monotonic() + 150  # bounded whatever happens
            while not stop.is_set() and time.monotonic() < deadline:
                body = {"id": f"{phase['name']}-{n}", "inputs": [
                    {"name": "input", "shape": [1, 8], "datatype": "FP32", "data": [0.1 * (n % 10)] * 8}]}
                outcomes.append(client.post("/v2/models/fraud/infer", json=body).status_code)
                n += 1

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    try:
        reader = LogReader(broker.bootstrap)
        reader.wait_for(lambda r: any(k.startswith("before-") for k in r))
        reader.close()
        broker.stop()  # the broker dies under load
        phase["name"] = "down"
        deadline = time.monotonic() + 60
        # Batches the broker cannot take are dropped once the client's buffer or delivery time runs out,
        # and counted; requests go on being served meanwhile.
        while metric(server, "loopline_inference_kafka_dropped_total") == 0:
            assert time.monotonic() < deadline, "no drops counted while the broker was down"
            assert worker.is_alive()
        served_while_down = len(outcomes)
        broker.start()  # back on the same port and data
        phase["name"] = "after"
        reader = LogReader(broker.bootstrap)
        try:
            reader.wait_for(lambda r: any(k.startswith("after-") for k in r), timeout=60)
        finally:
            reader.close()
    finally:
        stop.set()
        worker.join(30)
        server.proc.stop()
        broker.stop()
    assert served_while_down > 0
    assert outcomes and set(outcomes) == {200}, Counter_of(outcomes)


def Counter_of(values: list[int]) -> dict[int, int]:
    out: dict[int, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out
