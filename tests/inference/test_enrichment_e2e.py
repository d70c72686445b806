"""Feature enrichment end to end against the real features service (its own environment, .venvs/features,
over real Feast stores holding the demo data): requests name entities, the server fetches their online
features over gRPC and builds the model's input in the model's feature order; missing and expired
features follow the policy (default + flag, or reject with INVALID_ARGUMENT / 400)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
import tritonclient.grpc as tgrpc
from tritonclient.utils import InferenceServerException

from loopline.features.v1 import features_pb2, features_pb2_grpc
from tests.helpers import REPO, RunningProcess, free_port, start_process
from tests.inference import models
from tests.inference.conftest import Server, start_server

FEATURES_PY = REPO / ".venvs" / "features" / "bin" / "python"
KEYS = ["customer_id", "merchant_id"]
# The model's feature order, deliberately not the order of the views (nor the one the test asks in).
STORED = ["merchant_risk_7d:merchant_amount_mean_7d", "customer_profile:credit_limit",
          "customer_txn_7d:txn_count_7d", "customer_profile:account_age_days"]
# Plus a 1-hour window: in two days of history most customers' last hour is older than its 1 h TTL.
WITH_1H = [*STORED, "customer_txn_1h:txn_count_1h"]
UNKNOWN = "C999999"
# A text feature first (the model leans on its first input): served as a label, fed as its vocabulary code.
REGION = "customer_profile:home_region"
WITH_TEXT = [REGION, *STORED]


@dataclass
class Features:
    grpc: str
    # (customer, merchant) of the latest transactions: every stored feature of theirs is present.
    active: list[tuple[str, str]]
    # (customer, merchant) of a customer whose newest transaction is over two hours old: its 1-hour window
    # has expired whatever the time of day the history ends at.
    stale: tuple[str, str]


@pytest.fixture(scope="module")
def features(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Features]:
    """The features service over two days of demo history (20 customers), materialized online."""
    data = tmp_path_factory.mktemp("features-data")
    subprocess.run(
        [str(FEATURES_PY), "-m", "loopline_features.demo_cli", "history", "--repo-dir", str(REPO / "feature_repo"),
         "--data-dir", str(data), "--days", "2", "--customers", "20", "--merchants", "5", "--seed", "3"],
        check=True, capture_output=True, timeout=300, cwd=REPO,
    )
    proc: RunningProcess = start_process([str(FEATURES_PY), "-m", "loopline_features"], {
        "LOOPLINE_FEATURES_HTTP_PORT": "0", "LOOPLINE_FEATURES_GRPC_PORT": "0",
        "LOOPLINE_FEATURES_REPO_DIR": str(REPO / "feature_repo"), "LOOPLINE_FEATURES_DATA_DIR": str(data),
        "LOOPLINE_FEATURES_ENVIRONMENT": "embedded", "LOOPLINE_FEATURES_SHUTDOWN_GRACE_SECONDS": "2",
    })
    try:
        serving = proc.wait_for_log(lambda r: r.get("message") == "serving", timeout=300)
        target = f"127.0.0.1:{serving['grpc_port']}"
        request = features_pb2.MaterializeRequest()
        request.start_time.FromDatetime(datetime.now(UTC) - timedelta(days=400))
        request.end_time.FromDatetime(datetime.now(UTC) + timedelta(seconds=1))
        with grpc.insecure_channel(target) as channel:
            features_pb2_grpc.FeaturesServiceStub(channel).Materialize(request, timeout=120)
        txns = pd.read_parquet(data / "offline" / "transactions.parquet").sort_values("event_timestamp")
        active = list(dict.fromkeys(zip(txns["customer_id"], txns["merchant_id"], strict=True)))[-3:]
        newest = txns.groupby("customer_id").tail(1)
        old = newest[newest["event_timestamp"] < pd.Timestamp(datetime.now(UTC) - timedelta(hours=2))]
        assert len(old), "the generated history has no customer idle for two hours"
        yield Features(target, active, (str(old["customer_id"].iloc[0]), str(old["merchant_id"].iloc[0])))
    finally:
        proc.stop()


def lookup(features: Features, refs: list[str], rows: list[tuple[str, str]]) -> dict[str, list[tuple[Any, int]]]:
    """What the features service itself answers, by feature name: one (value, status) per row."""
    request = features_pb2.GetOnlineFeaturesRequest()
    request.feature_refs.refs.extend(sorted(refs))
    for customer, merchant in rows:
        entity = request.entities.add()
        entity.join_keys["customer_id"].string_value = customer
        entity.join_keys["merchant_id"].string_value = merchant
    with grpc.insecure_channel(features.grpc) as channel:
        response = features_pb2_grpc.FeaturesServiceStub(channel).GetOnlineFeatures(request, timeout=30)
    out: dict[str, list[tuple[Any, int]]] = {}
    for j, name in enumerate(response.feature_names):
        cells = []
        for vector in response.results:
            value = vector.values[j].value
            kind = value.WhichOneof("kind")
            cells.append((getattr(value, kind) if kind else None, vector.values[j].status))
        out[name] = cells
    return out


def model_file(folder: Path, refs: list[str]) -> bytes:
    return models.lightgbm_model(folder / "model.onnx", n_features=len(refs), trees=10, feature_names=refs,
                                 entity_keys=KEYS).read_bytes()


def score(onnx: bytes, matrix: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    session = ort.InferenceSession(onnx, providers=["CPUExecutionProvider"])
    return session.run(["probabilities"], {"input": matrix})[0]  # type: ignore[no-any-return]


def entity_body(rows: list[tuple[str, str]]) -> dict[str, Any]:
    return {"inputs": [{"name": key, "datatype": "BYTES", "shape": [len(rows)], "data": [r[i] for r in rows]}
                       for i, key in enumerate(KEYS)]}


def grpc_infer(server: Server, model: str, rows: list[tuple[str, str]]) -> tgrpc.InferResult:
    inputs = []
    for i, key in enumerate(KEYS):
        tensor = tgrpc.InferInput(key, [len(rows)], "BYTES")
        tensor.set_data_from_numpy(np.array([r[i].encode() for r in rows], dtype=object))
        inputs.append(tensor)
    return tgrpc.InferenceServerClient(server.grpc).infer(model, inputs, client_timeout=30)


@dataclass
class Served:
    server: Server
    onnx: bytes


@pytest.fixture(scope="module")
def defaulting(features: Features, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("enrich-default")
    onnx = model_file(folder, WITH_1H)
    server = start_server(model_name="fraud", model=str(folder), features_address=features.grpc,
                          features_timeout_seconds="30")
    yield Served(server, onnx)
    server.proc.stop()


@pytest.fixture(scope="module")
def rejecting(features: Features, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("enrich-reject")
    onnx = model_file(folder, STORED)
    server = start_server(model_name="fraud", model=str(folder), features_address=features.grpc,
                          features_timeout_seconds="30", missing_features="reject")
    yield Served(server, onnx)
    server.proc.stop()


def test_entities_are_enriched_in_model_order_and_gaps_defaulted_and_flagged(
    features: Features, defaulting: Served
) -> None:
    rows = [*features.active, features.stale, (UNKNOWN, features.active[0][1])]
    truth = lookup(features, WITH_1H, rows)
    statuses = {s for cells in truth.values() for _, s in cells}
    # The data holds all three cases: present, expired (1 h TTL) and not found (unknown customer).
    assert {features_pb2.FEATURE_STATUS_PRESENT, features_pb2.FEATURE_STATUS_EXPIRED,
            features_pb2.FEATURE_STATUS_NOT_FOUND} <= statuses
    matrix = np.array([[float(truth[name][i][0]) if truth[name][i][1] == features_pb2.FEATURE_STATUS_PRESENT
                        else np.nan for name in WITH_1H] for i in range(len(rows))], dtype=np.float32)
    flagged = int(np.isnan(matrix).any(axis=1).sum())
    assert 0 < flagged <= len(rows)
    want = score(defaulting.onnx, matrix)

    reply = httpx.post(f"{defaulting.server.base}/v2/models/fraud/infer", json=entity_body(rows), timeout=30)
    assert reply.status_code == 200, reply.text
    doc = reply.json()
    assert doc["parameters"]["loopline_defaulted_rows"] == flagged
    probabilities = next(o for o in doc["outputs"] if o["name"] == "probabilities")
    assert probabilities["shape"] == [len(rows), 2]
    np.testing.assert_allclose(np.array(probabilities["data"]).reshape(-1, 2), want, rtol=1e-5)

    result = grpc_infer(defaulting.server, "fraud", rows)
    np.testing.assert_allclose(result.as_numpy("probabilities"), want, rtol=1e-5)
    assert result.get_response().parameters["loopline_defaulted_rows"].int64_param == flagged


def test_reject_policy_refuses_missing_features_and_serves_complete_rows(
    features: Features, rejecting: Served
) -> None:
    truth = lookup(features, STORED, features.active)
    assert all(s == features_pb2.FEATURE_STATUS_PRESENT for cells in truth.values() for _, s in cells)
    matrix = np.array([[float(truth[name][i][0]) for name in STORED] for i in range(len(features.active))],
                      dtype=np.float32)
    reply = httpx.post(f"{rejecting.server.base}/v2/models/fraud/infer", json=entity_body(features.active),
                       timeout=30)
    assert reply.status_code == 200, reply.text
    assert "loopline_defaulted_rows" not in reply.json()["parameters"]
    data = next(o for o in reply.json()["outputs"] if o["name"] == "probabilities")["data"]
    np.testing.assert_allclose(np.array(data).reshape(-1, 2), score(rejecting.onnx, matrix), rtol=1e-5)

    rows = [features.active[0], (UNKNOWN, features.active[0][1])]
    refused = httpx.post(f"{rejecting.server.base}/v2/models/fraud/infer", json=entity_body(rows), timeout=30)
    assert refused.status_code == 400
    message = refused.json()["error"]
    assert "missing or expired" in message and "entity row 1" in message
    with pytest.raises(InferenceServerException) as grpc_refused:
        grpc_infer(rejecting.server, "fraud", rows)
    assert grpc_refused.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "missing or expired" in (grpc_refused.value.message() or "")
    # The server is still up and serving.
    assert httpx.get(f"{rejecting.server.base}/v2/health/ready").status_code == 200


def test_text_features_are_fed_as_their_training_codes(features: Features,
                                                       tmp_path_factory: pytest.TempPathFactory) -> None:
    """A categorical feature is fed as training encoded it (its label's index in the vocabulary shipped in
    the model's preprocessing metadata; a label not in it is the unknown code, not a missing value)."""
    truth = lookup(features, WITH_TEXT, features.active)
    labels = [str(value) for value, _ in truth[REGION]]
    assert all(s == features_pb2.FEATURE_STATUS_PRESENT for _, s in truth[REGION])
    # The first row's label is left out of the vocabulary: it must be fed as the unknown code (-1).
    vocabulary = sorted({"aaa-first", *labels} - {labels[0]})
    codes = [float(vocabulary.index(label)) if label in vocabulary else -1.0 for label in labels]
    preprocessing = {"input": "input", "dtype": "float32", "features": [
        {"name": REGION, "kind": "categorical", "vocabulary": vocabulary, "unknown": -1.0},
        *({"name": name, "kind": "numeric", "missing": "NaN"} for name in STORED)]}
    folder = tmp_path_factory.mktemp("enrich-text")
    onnx = models.lightgbm_model(folder / "model.onnx", n_features=len(WITH_TEXT), trees=10,
                                 feature_names=WITH_TEXT, entity_keys=KEYS, preprocessing=preprocessing).read_bytes()
    matrix = np.array([[codes[i], *(float(truth[name][i][0]) for name in STORED)]
                       for i in range(len(features.active))], dtype=np.float32)
    want = score(onnx, matrix)
    # Fed as NaN (what a text value became before), the scores differ: the test can tell the two apart.
    as_missing = matrix.copy()
    as_missing[:, 0] = np.nan
    assert not np.allclose(score(onnx, as_missing), want)
    server = start_server(model_name="fraud", model=str(folder), features_address=features.grpc,
                          features_timeout_seconds="30", missing_features="reject")
    try:
        reply = httpx.post(f"{server.base}/v2/models/fraud/infer", json=entity_body(features.active), timeout=30)
        assert reply.status_code == 200, reply.text
        assert "loopline_defaulted_rows" not in reply.json()["parameters"]
        data = next(o for o in reply.json()["outputs"] if o["name"] == "probabilities")["data"]
        np.testing.assert_allclose(np.array(data).reshape(-1, 2), want, rtol=1e-5)
        np.testing.assert_allclose(grpc_infer(server, "fraud", features.active).as_numpy("probabilities"), want,
                                   rtol=1e-5)
    finally:
        server.proc.stop()


def test_each_track_is_fed_its_own_features(features: Features, tmp_path_factory: pytest.TempPathFactory) -> None:
    """A request is routed before its features are fetched: a challenger with other features than the
    champion's is fed its own (in live traffic and in shadow), and a failure on the way is its track's."""
    champion_dir, challenger_dir = tmp_path_factory.mktemp("own-champion"), tmp_path_factory.mktemp("own-challenger")
    model_file(champion_dir, WITH_1H)
    challenger = model_file(challenger_dir, STORED[::-1])  # fewer features, in another order
    truth = lookup(features, STORED, features.active)
    matrix = np.array([[float(truth[name][i][0]) for name in STORED[::-1]] for i in range(len(features.active))],
                      dtype=np.float32)
    want = score(challenger, matrix)
    server = start_server(model_name="fraud", model=str(champion_dir), challenger=str(challenger_dir),
                          challenger_weight="1.0", features_address=features.grpc, features_timeout_seconds="30")
    try:
        reply = httpx.post(f"{server.base}/v2/models/fraud/infer", json=entity_body(features.active), timeout=30)
        assert reply.status_code == 200, reply.text
        assert reply.json()["parameters"]["track"] == "challenger"
        data = next(o for o in reply.json()["outputs"] if o["name"] == "probabilities")["data"]
        np.testing.assert_allclose(np.array(data).reshape(-1, 2), want, rtol=1e-5)
    finally:
        server.proc.stop()

    # With nothing listening where the features service should be, the request fails on the way, and the
    # failure is the challenger's (the track it was routed to), not a track-less one.
    broken = start_server(model_name="fraud", model=str(champion_dir), challenger=str(challenger_dir),
                          challenger_weight="1.0", features_address=f"127.0.0.1:{free_port()}",
                          features_timeout_seconds="2")
    try:
        reply = httpx.post(f"{broken.base}/v2/models/fraud/infer", json=entity_body(features.active), timeout=30)
        assert reply.status_code == 503, reply.text
        assert track_metric(broken, track="challenger", status="UNAVAILABLE") == 1
        assert track_metric(broken, track="", status="UNAVAILABLE") == 0
    finally:
        broken.proc.stop()


def track_metric(server: Server, **labels: str) -> float:
    """loopline_inference_predict_requests_total summed over the series with these labels."""
    text = httpx.get(f"{server.base}/metrics", timeout=10).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith("loopline_inference_predict_requests_total{") and all(
                f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total
