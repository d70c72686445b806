"""Skew against the real features service: demo history in its offline store (written by its own demo CLI),
the service as a process from its own environment (.venvs/features, the only one with feast), and
monitoring's adapter asking GetHistoricalFeatures for the point-in-time values of sampled predictions."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from loopline_monitoring import skew
from loopline_monitoring.features_client import FeaturesOffline

from tests.helpers import REPO, absent, start_process

pytestmark = pytest.mark.slow

FEATURES_PYTHON = REPO / ".venvs" / "features" / "bin" / "python"
STORED = ["credit_limit", "account_age_days", "txn_count_1h", "txn_amount_sum_1h", "txn_count_24h",
          "txn_count_7d", "merchant_txn_count_7d"]


@pytest.fixture(scope="module")
def features(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    if not FEATURES_PYTHON.exists():
        absent("the features environment (.venvs/features) is not set up; run `make setup`")
    data_dir = tmp_path_factory.mktemp("features")
    subprocess.run(
        [str(FEATURES_PYTHON), "-m", "loopline_features.demo_cli", "history", "--repo-dir", str(REPO / "feature_repo"),
         "--data-dir", str(data_dir), "--days", "2", "--customers", "60", "--merchants", "12"],
        check=True, cwd=REPO, capture_output=True, timeout=600,
    )
    process = start_process(
        [str(FEATURES_PYTHON), "-m", "loopline_features"],
        {
            "LOOPLINE_FEATURES_HTTP_PORT": "0", "LOOPLINE_FEATURES_GRPC_PORT": "0",
            "LOOPLINE_FEATURES_REPO_DIR": str(REPO / "feature_repo"), "LOOPLINE_FEATURES_DATA_DIR": str(data_dir),
            "LOOPLINE_FEATURES_ENVIRONMENT": "embedded", "LOOPLINE_FEATURES_SHUTDOWN_GRACE_SECONDS": "2",
        },
    )
    try:
        serving = process.wait_for_log(lambda r: r.get("message") == "serving", timeout=300)
        yield f"127.0.0.1:{serving['grpc_port']}", data_dir
    finally:
        process.stop()


def test_skew_against_the_offline_store_is_found_only_when_served_values_were_tampered_with(
    features: tuple[str, Path],
) -> None:
    target, data_dir = features
    transactions = pq.read_table(data_dir / "offline" / "transactions.parquet").to_pandas()
    rng = np.random.default_rng(3)
    picked = transactions.iloc[rng.choice(len(transactions), 80, replace=False)]
    samples: list[dict[str, Any]] = [
        {"request_id": f"r{i}", "time": row.event_timestamp.timestamp(),
         "entity_ids": {"customer_id": row.customer_id, "merchant_id": row.merchant_id},
         "served": dict.fromkeys(STORED)}
        for i, row in enumerate(picked.itertuples())
    ]
    offline = FeaturesOffline(target=target, timeout=120, feature_service=lambda model, version: "fraud_stored_v1")
    try:
        truth = offline.lookup(model_name="fraud", version=1, samples=samples)
        assert all(row is not None for row in truth)
        assert any(row and row["txn_count_7d"] for row in truth)  # real values, not all empty
        # What inference served, honestly: the same values (through float32, as the model saw them).
        honest = [{k: (None if v is None else float(np.float32(v))) for k, v in row.items()} for row in truth if row]
        for sample, served in zip(samples, honest, strict=True):
            sample["served"] = served
        again = offline.lookup(model_name="fraud", version=1, samples=samples)
        counters: dict[str, skew.FeatureCounters] = {}
        skew.fold(counters, honest, again)
        clean = {f.feature: f for f in skew.report(counters)}
        assert all(f.mismatches == 0 for f in clean.values()), clean
        assert clean["txn_count_7d"].compared == 80

        # Served from a stale online store: the 7-day count is off for one request in four.
        tampered = [dict(row) for row in honest]
        for row in tampered[::4]:
            row["txn_count_7d"] = (row["txn_count_7d"] or 0.0) + 3.0
        counters = {}
        skew.fold(counters, tampered, again)
        found = {f.feature: f for f in skew.report(counters)}
        # rows the offline store has no value for count as offline misses, not as compared pairs
        misses = sum(1 for row in honest[::4] if row["txn_count_7d"] is None)
        assert found["txn_count_7d"].offline_missing == misses
        assert found["txn_count_7d"].mismatch_rate == pytest.approx((20 - misses) / (80 - misses))
        assert found["txn_count_7d"].distance > 0
        assert all(f.mismatches == 0 for name, f in found.items() if name != "txn_count_7d")
    finally:
        offline.close()
