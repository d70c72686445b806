"""The features service as a real process over real Feast stores (SQLite and Redis online), both transports."""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from loopline_features import repo
from loopline_features.demo import DemoConfig
from loopline_features.demo_cli import write_history

from tests.features.clients import CallError, GrpcClient, HttpClient
from tests.features.conftest import FEATURE_REPO, Service, Store, flush_redis, make_store, start_service

DEMO = DemoConfig(customers=120, merchants=30, seed=11)
NOW = datetime.now(UTC).replace(microsecond=0)
STORED_REFS = [
    "customer_profile:credit_limit", "customer_profile:account_age_days", "customer_profile:home_region",
    "customer_profile:is_premium", "customer_txn_1h:txn_count_1h", "customer_txn_1h:txn_amount_sum_1h",
    "customer_txn_24h:txn_count_24h", "customer_txn_7d:txn_count_7d", "customer_txn_7d:txn_amount_mean_7d",
    "merchant_risk_7d:merchant_txn_count_7d",
]


@dataclass
class Deployed:
    service: Service
    store: Store
    transactions: pd.DataFrame
    feast: Any  # an in-process FeatureStore over the same stores (the reference reader)


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def deployed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    kind = request.param
    store = make_store(kind, tmp_path_factory.mktemp(f"features-{kind}"))
    if kind == "redis":
        flush_redis()
    write_history(repo_dir=FEATURE_REPO, data_dir=store.data_dir, environment=store.environment, config=DEMO,
                  days=9, now=NOW)
    service = start_service(store)
    grpc_client = GrpcClient(service.grpc)
    try:
        views = grpc_client.materialize(start=NOW - timedelta(days=400), end=NOW + timedelta(seconds=1))
        assert "customer_txn_1h" in views and "customer_profile" in views
        transactions = pd.read_parquet(store.data_dir / "offline" / "transactions.parquet")
        feast = repo.build_store(repo_dir=FEATURE_REPO, data_dir=store.data_dir, environment=store.environment)
        yield Deployed(service, store, transactions, feast)
    finally:
        grpc_client.close()
        service.stop()
        if kind == "redis":
            flush_redis()


@pytest.fixture(params=["grpc", "http"])
def client(request: pytest.FixtureRequest, deployed: Deployed) -> Iterator[GrpcClient | HttpClient]:
    c: GrpcClient | HttpClient = (
        GrpcClient(deployed.service.grpc) if request.param == "grpc" else HttpClient(deployed.service.http)
    )
    yield c
    c.close()


def _same(a: Any, b: Any) -> bool:
    if a is None or (isinstance(a, float) and math.isnan(a)):
        return b is None or (isinstance(b, float) and math.isnan(b))
    if isinstance(a, float) or isinstance(b, float):
        return b is not None and math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=1e-12)
    return bool(a == b)


def test_online_values_equal_the_feast_sdk(deployed: Deployed, client: GrpcClient | HttpClient) -> None:
    customers = [*sorted(deployed.transactions["customer_id"].unique())[:25], "C999999"]
    merchants = sorted(deployed.transactions["merchant_id"].unique())
    rows = [{"customer_id": c, "merchant_id": merchants[i % len(merchants)]} for i, c in enumerate(customers)]
    ours = client.online(entities=rows, feature_service="fraud_stored_v1")
    sdk = deployed.feast.get_online_features(
        features=deployed.feast.get_feature_service("fraud_stored_v1"), entity_rows=rows, full_feature_names=True
    ).to_dict()
    assert len(ours.feature_names) == 17
    for j, name in enumerate(ours.feature_names):
        column = sdk[name.replace(":", "__")]
        for i in range(len(rows)):
            assert _same(column[i], ours.values[i][j]), (name, rows[i], column[i], ours.values[i][j])
    # The unknown customer: its customer features are NOT_FOUND, its merchant's are found.
    last = dict(zip(ours.feature_names, ours.statuses[-1], strict=True))
    assert last["customer_profile:credit_limit"] == "NOT_FOUND"
    assert last["merchant_risk_7d:merchant_txn_count_7d"] in ("PRESENT", "EXPIRED")
    assert ours.statuses[0][0] == "PRESENT"  # profiles are a year valid


def test_aggregates_online_are_the_newest_batch_rows(deployed: Deployed, client: GrpcClient | HttpClient) -> None:
    history = pd.read_parquet(deployed.store.data_dir / "offline" / "customer_txn_7d.parquet")
    latest = history.sort_values("event_timestamp").groupby("customer_id").last()
    customers = list(latest.index[:30])
    got = client.online(entities=[{"customer_id": c} for c in customers],
                        features=["customer_txn_7d:txn_count_7d", "customer_txn_7d:txn_amount_sum_7d"])
    for i, customer in enumerate(customers):
        assert got.values[i][0] == latest.loc[customer, "txn_count_7d"]
        assert math.isclose(got.values[i][1], latest.loc[customer, "txn_amount_sum_7d"], rel_tol=1e-12)
        # Event time is the row's (Feast's SQLite store keeps whole seconds).
        expected = latest.loc[customer, "event_timestamp"].timestamp()
        assert got.event_times[i][0] is not None and abs(got.event_times[i][0] - expected) < 1.0


def test_ttl_expiry_gives_expired(deployed: Deployed, client: GrpcClient | HttpClient) -> None:
    now = datetime.now(UTC)
    rows = pd.DataFrame({
        "customer_id": ["T-old", "T-fresh"],
        "event_timestamp": pd.to_datetime([now - timedelta(hours=2), now - timedelta(minutes=5)], utc=True),
        "created": pd.to_datetime([now, now], utc=True),
        "txn_count_1h": [3, 4], "txn_amount_sum_1h": [30.0, 40.0], "txn_amount_max_1h": [10.0, 20.0],
    })
    deployed.feast.write_to_online_store("customer_txn_1h", rows)
    got = client.online(entities=[{"customer_id": "T-old"}, {"customer_id": "T-fresh"}, {"customer_id": "T-none"}],
                        features=["customer_txn_1h:txn_count_1h", "customer_txn_1h:txn_amount_sum_1h"])
    assert got.statuses == [["EXPIRED", "EXPIRED"], ["PRESENT", "PRESENT"], ["NOT_FOUND", "NOT_FOUND"]]
    assert got.values == [[3, 30.0], [4, 40.0], [None, None]]  # an expired value is still given
    assert got.event_times[2] == [None, None]
    assert abs(got.event_times[0][0] - (now - timedelta(hours=2)).timestamp()) < 1.0


def test_on_demand_feature_uses_request_data(deployed: Deployed, client: GrpcClient | HttpClient) -> None:
    history = pd.read_parquet(deployed.store.data_dir / "offline" / "customer_txn_7d.parquet")
    latest = history.sort_values("event_timestamp").groupby("customer_id").last()
    customer = latest.index[0]
    got = client.online(entities=[{"customer_id": customer}],
                        features=["transaction_amount_ratio:amount_to_mean_7d"], request_data=[{"amount": 90.0}])
    assert got.feature_names == ["transaction_amount_ratio:amount_to_mean_7d"]
    assert math.isclose(got.values[0][0], 90.0 / latest.loc[customer, "txn_amount_mean_7d"], rel_tol=1e-12)
    assert got.statuses[0][0] == "PRESENT"
    full = client.online(entities=[{"customer_id": customer, "merchant_id": "M00001"}], feature_service="fraud_v1",
                         request_data=[{"amount": 90.0}])
    assert len(full.feature_names) == 18
    with pytest.raises(CallError) as missing:
        client.online(entities=[{"customer_id": customer}], features=["transaction_amount_ratio:amount_to_mean_7d"])
    assert missing.value.code == "INVALID_ARGUMENT" and "amount" in missing.value.message


BAD_INPUTS = [
    ({"feature_service": "fraud_v9", "entities": [{"customer_id": "C000001"}]}, "NOT_FOUND", "fraud_v9"),
    ({"features": ["customer_txn_1h:nope"], "entities": [{"customer_id": "C000001"}]}, "NOT_FOUND", "nope"),
    ({"features": ["no_such_view:x"], "entities": [{"customer_id": "C000001"}]}, "NOT_FOUND", "no_such_view"),
    ({"features": ["customer_txn_1h"], "entities": [{"customer_id": "C000001"}]}, "INVALID_ARGUMENT", "<feature view>"),
    ({"features": ["customer_txn_1h:txn_count_1h"], "entities": [{"customer_id": 42}]}, "INVALID_ARGUMENT",
     "must be a string"),
    ({"features": ["customer_txn_1h:txn_count_1h"], "entities": [{"merchant_id": "M1"}]}, "INVALID_ARGUMENT",
     "lacks join key customer_id"),
    ({"features": ["customer_txn_1h:txn_count_1h"], "entities": [{"customer_id": "C1"}] * 1001},
     "INVALID_ARGUMENT", "limit is 1000"),
    ({"features": ["customer_txn_1h:txn_count_1h"], "entities": []}, "INVALID_ARGUMENT", "no entity rows"),
]


@pytest.mark.parametrize(("call", "code", "text"), BAD_INPUTS, ids=[c for _, c, _ in BAD_INPUTS])
def test_bad_input_is_refused_and_the_service_stays_up(
    deployed: Deployed, client: GrpcClient | HttpClient, call: dict[str, Any], code: str, text: str
) -> None:
    with pytest.raises(CallError) as refused:
        client.online(**call)
    assert refused.value.code == code
    assert text in refused.value.message
    assert client.online(entities=[{"customer_id": "C000001"}], features=["customer_profile:credit_limit"])


def test_describe_feature_services(deployed: Deployed, client: GrpcClient | HttpClient) -> None:
    assert {"fraud_v1", "fraud_stored_v1"} <= set(client.list_services())
    info = client.feature_service("fraud_v1")
    by_ref = {f["ref"]: f for f in info["features"]}
    assert by_ref["customer_txn_1h:txn_count_1h"] == {
        "ref": "customer_txn_1h:txn_count_1h", "value_type": "INT64", "on_demand": False, "ttl_seconds": 3600,
        "join_keys": ["customer_id"],
    }
    assert by_ref["transaction_amount_ratio:amount_to_mean_7d"]["on_demand"] is True
    assert by_ref["customer_profile:home_region"]["value_type"] == "STRING"
    with pytest.raises(CallError) as unknown:
        client.feature_service("fraud_v0")
    assert unknown.value.code == "NOT_FOUND"


def _append_offline(path: Path, rows: pd.DataFrame) -> None:
    """New rows at the end of a view's offline source (as the stream's offline pushes append them)."""
    existing = pd.read_parquet(path)
    combined = pd.concat([existing, rows[list(existing.columns)].astype(existing.dtypes.to_dict())],
                         ignore_index=True)
    tmp = path.with_suffix(".tmp")
    pq.write_table(pa.Table.from_pandas(combined, preserve_index=False), tmp)
    tmp.replace(path)


def test_materialize_incremental_by_range_and_unknown_view(deployed: Deployed, client: GrpcClient | HttpClient
                                                           ) -> None:
    transport = "grpc" if isinstance(client, GrpcClient) else "http"
    new, old = f"T-new-{transport}", f"T-old-{transport}"  # customers no earlier run has put online
    refs = ["customer_profile:credit_limit", "customer_profile:home_region"]
    entities = [{"customer_id": new}, {"customer_id": old}]
    now = datetime.now(UTC)
    # One row after everything materialized so far, one inside an interval materialized already.
    _append_offline(deployed.store.data_dir / "offline" / "customer_profile.parquet", pd.DataFrame({
        "customer_id": [new, old],
        "event_timestamp": pd.to_datetime([now, NOW - timedelta(days=2)], utc=True),
        "created": pd.to_datetime([now, now], utc=True),
        "credit_limit": [1234.5, 678.0], "account_age_days": [10, 20], "home_region": ["north", "south"],
        "is_premium": [True, False],
    }))
    assert client.online(entities=entities, features=refs).statuses == [["NOT_FOUND"] * 2] * 2  # offline only

    assert client.materialize(feature_views=["customer_profile"]) == ["customer_profile"]
    got = client.online(entities=entities, features=refs)
    # Incremental: from where the view's last materialization ended, so only the new row goes online.
    assert got.statuses == [["PRESENT", "PRESENT"], ["NOT_FOUND", "NOT_FOUND"]]
    assert got.values[0] == [1234.5, "north"]
    assert got.event_times[0][0] is not None and abs(got.event_times[0][0] - now.timestamp()) < 1.0

    # By range: the interval is read again and the older row goes online too.
    assert client.materialize(start=NOW - timedelta(days=3), feature_views=["customer_profile"]) == [
        "customer_profile"]
    got = client.online(entities=entities, features=refs)
    assert got.statuses == [["PRESENT", "PRESENT"]] * 2
    assert got.values == [[1234.5, "north"], [678.0, "south"]]

    with pytest.raises(CallError) as unknown:
        client.materialize(feature_views=["no_view"])
    assert unknown.value.code == "NOT_FOUND"


def _brute_force(history: pd.DataFrame, key: str, feature: str, entity: str, when: pd.Timestamp,
                 ttl: timedelta) -> Any:
    """The value a point-in-time join must give: the newest row at or before `when`, within the TTL."""
    rows = history[(history[key] == entity) & (history["event_timestamp"] <= when)
                   & (history["event_timestamp"] >= when - ttl)]
    if rows.empty:
        return None
    return rows.sort_values(["event_timestamp", "created"]).iloc[-1][feature]


def _content_sha256(table: pa.Table) -> str:
    """A training set's hash as its reader recomputes it (training's job hashing does the same): the rows
    in canonical order (sorted by every column, nulls last), no schema metadata, SHA-256 of the Arrow IPC
    stream. Sorting goes through `take`, which also zeroes the bytes under null values: Arrow leaves those
    undefined, and the parquet reader leaves them as it finds them, so the table as read does not hash the
    same without it."""
    order = pc.sort_indices(table, sort_keys=[(c, "ascending", "at_end") for c in table.column_names])
    table = table.take(order).replace_schema_metadata(None).combine_chunks()
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()


# The offline store is the same parquet whichever the online store, so one store is enough here.
@pytest.mark.parametrize("deployed", ["sqlite"], indirect=True)
def test_training_set_is_point_in_time_correct(deployed: Deployed) -> None:
    rng = np.random.default_rng(5)
    sample = deployed.transactions.iloc[rng.choice(len(deployed.transactions), 150, replace=False)]
    rows = []
    for i, txn in enumerate(sample.itertuples()):
        # Half the rows ask for just before the transaction: the row the transaction itself made is then
        # in the future and must not be seen.
        when = txn.event_timestamp - (pd.Timedelta(milliseconds=1) if i % 2 else pd.Timedelta(0))
        rows.append(({"customer_id": txn.customer_id, "merchant_id": txn.merchant_id,
                      "is_fraud": bool(txn.is_fraud)}, when.to_pydatetime()))
    refs = ["customer_txn_1h:txn_count_1h", "customer_txn_24h:txn_amount_sum_24h", "customer_txn_7d:txn_count_7d",
            "merchant_risk_7d:merchant_txn_count_7d", "customer_profile:credit_limit"]
    grpc_client, http_client = GrpcClient(deployed.service.grpc), HttpClient(deployed.service.http)
    try:
        by_grpc = grpc_client.historical(rows=rows, features=refs, dataset_name="pit")
        by_http = http_client.historical(rows=rows, features=refs, dataset_name="pit")
    finally:
        grpc_client.close()
        http_client.close()
    assert by_grpc == by_http  # same rows, same content, same place
    assert by_grpc["row_count"] == 150
    written = pq.read_table(by_grpc["uri"])
    # The answer describes the file: its rows, its columns in canonical order (entity columns by name,
    # the event time, the features as asked), and the SHA-256 of its content.
    assert written.num_rows == by_grpc["row_count"]
    assert written.column_names == by_grpc["columns"] == [
        "customer_id", "is_fraud", "merchant_id", "event_timestamp", *(r.split(":")[1] for r in refs)]
    assert _content_sha256(written) == by_grpc["content_sha256"]
    assert by_grpc["uri"].endswith(f"/pit/{by_grpc['content_sha256'][:16]}.parquet")
    table = written.to_pandas()
    # Whatever order the entity rows came in, the file's rows are sorted by all columns.
    assert table.equals(table.sort_values(written.column_names).reset_index(drop=True)), "rows not in canonical order"
    offline = deployed.store.data_dir / "offline"
    sources = {
        "txn_count_1h": (pd.read_parquet(offline / "customer_txn_1h.parquet"), "customer_id", timedelta(hours=1)),
        "txn_amount_sum_24h": (pd.read_parquet(offline / "customer_txn_24h.parquet"), "customer_id",
                               timedelta(hours=24)),
        "txn_count_7d": (pd.read_parquet(offline / "customer_txn_7d.parquet"), "customer_id", timedelta(days=7)),
        "merchant_txn_count_7d": (pd.read_parquet(offline / "merchant_risk_7d.parquet"), "merchant_id",
                                  timedelta(days=7)),
        "credit_limit": (pd.read_parquet(offline / "customer_profile.parquet"), "customer_id", timedelta(days=365)),
    }
    seen_fresh = 0
    for row in table.itertuples():
        when = pd.Timestamp(row.event_timestamp)
        for feature, (history, key, ttl) in sources.items():
            expected = _brute_force(history, key, feature, getattr(row, key), when, ttl)
            assert _same(expected, getattr(row, feature)), (feature, getattr(row, key), when, expected)
        seen_fresh += int(row.txn_count_1h > 0) if not pd.isna(row.txn_count_1h) else 0
    assert seen_fresh > 0


def test_readiness_request_and_freshness_metrics(deployed: Deployed) -> None:
    service = deployed.service
    ready = httpx.get(f"{service.http}/readyz", timeout=10)
    assert ready.status_code == 200 and ready.json()["checks"]["online_store"] == "ok"

    # Each call is counted under its own transport and method, and only there.
    grpc_method, http_method = "/loopline.features.v1.FeaturesService/GetOnlineFeatures", "POST /v1/online-features"
    count = "loopline_features_request_duration_seconds_count"

    def counts() -> tuple[float, float]:
        return (service.metric(count, transport="grpc", method=grpc_method) or 0.0,
                service.metric(count, transport="http", method=http_method) or 0.0)

    rows, refs = [{"customer_id": "C000001"}], ["customer_profile:credit_limit"]
    grpc_client, http_client = GrpcClient(service.grpc), HttpClient(service.http)
    try:
        grpc_before, http_before = counts()
        grpc_client.online(entities=rows, features=refs)
        assert counts() == (grpc_before + 1, http_before)
        http_client.online(entities=rows, features=refs)
        http_client.online(entities=rows, features=refs)
        assert counts() == (grpc_before + 1, http_before + 2)
    finally:
        grpc_client.close()
        http_client.close()

    # Freshness: seconds since the newest event time materialized online, here that of the view's source.
    newest = pd.read_parquet(deployed.store.data_dir / "offline" / "customer_profile.parquet")["event_timestamp"].max()
    before = time.time()
    freshness = service.metric("loopline_features_feature_freshness_seconds", feature_view="customer_profile")
    after = time.time()
    assert freshness is not None
    assert before - newest.timestamp() - 1e-3 <= freshness <= after - newest.timestamp() + 1e-3


def test_data_dir_layout(deployed: Deployed) -> None:
    assert (Path(deployed.store.data_dir) / "registry.db").exists()
