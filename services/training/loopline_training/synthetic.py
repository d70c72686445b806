"""A seeded fraud-like card-transaction dataset: features, label and timestamps in one table.

For developing and testing the training path without the features service (a job's `dataset_uri`), and
for the benchmark. Same arguments, same rows. `shift` moves the distribution (bigger amounts, a riskier
merchant-category mix, more online and far-away transactions) to inject drift on purpose.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd  # type: ignore[import-untyped]

CATEGORIES = ("grocery", "fuel", "restaurants", "online_retail", "travel", "electronics", "gaming", "jewelry")
_CATEGORY_RISK = np.array([-0.6, -0.4, -0.3, 0.3, 0.5, 0.7, 0.9, 1.1])
_CATEGORY_MIX = np.array([0.28, 0.14, 0.18, 0.16, 0.07, 0.08, 0.05, 0.04])
_SHIFTED_MIX = np.array([0.16, 0.10, 0.12, 0.22, 0.10, 0.12, 0.10, 0.08])
FEATURES = (
    "amount", "merchant_category", "hour_of_day", "is_online", "txn_count_1h", "txn_count_24h",
    "amount_sum_24h", "customer_age_days", "distance_from_home_km",
)
LABEL = "is_fraud"
TIMESTAMP = "event_timestamp"
START = datetime(2026, 1, 1, tzinfo=UTC)


def transactions(
    *, rows: int, seed: int = 7, start: datetime = START, days: float = 60.0, shift: float = 0.0,
    customers: int = 2000, merchants: int = 300,
) -> pd.DataFrame:
    """`rows` transactions over `days` days from `start`, sorted by time, with an `is_fraud` label (~4 %)."""
    rng = np.random.default_rng(seed)
    seconds = np.sort(rng.uniform(0, days * 86400, rows)).round()
    timestamps = pd.to_datetime(start) + pd.to_timedelta(seconds, unit="s")
    mix = (1 - shift) * _CATEGORY_MIX + shift * _SHIFTED_MIX
    category = rng.choice(len(CATEGORIES), size=rows, p=mix / mix.sum())
    amount = np.round(rng.lognormal(mean=3.4 + 0.5 * shift + 0.25 * (category >= 4), sigma=0.9, size=rows), 2)
    hour = ((seconds % 86400) // 3600).astype(np.int64)
    is_online = (rng.random(rows) < np.where(category == 3, 0.95, 0.15 + 0.2 * shift)).astype(np.int64)
    txn_1h = rng.poisson(0.4 + 0.6 * (rng.random(rows) < 0.05), rows).astype(np.int64)
    txn_24h = txn_1h + rng.poisson(2.5, rows).astype(np.int64)
    amount_sum_24h = np.round(amount * (1 + txn_24h) * rng.uniform(0.6, 1.4, rows), 2)
    age_days = rng.integers(1, 3650, rows).astype(np.int64)
    distance = np.round(rng.gamma(1.5, 8.0 + 20.0 * shift, rows), 1)
    distance[rng.random(rows) < 0.04] = np.nan  # no home location on file
    night = (hour < 6).astype(float)
    logit = (
        -6.0 + 1.1 * (np.log(amount) - 3.4) + 1.6 * _CATEGORY_RISK[category] + 1.6 * night + 1.0 * is_online
        + 1.1 * txn_1h + 1.2 * (age_days < 60) + 0.03 * np.nan_to_num(distance, nan=20.0)
    )
    label = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    return pd.DataFrame({
        TIMESTAMP: timestamps,
        "transaction_id": [f"T{seed:04d}{i:08d}" for i in range(rows)],
        "customer_id": [f"C{c:06d}" for c in rng.integers(0, customers, rows)],
        "merchant_id": [f"M{m:05d}" for m in rng.integers(0, merchants, rows)],
        "amount": amount,
        "merchant_category": np.array(CATEGORIES, dtype=object)[category],
        "hour_of_day": hour,
        "is_online": is_online,
        "txn_count_1h": txn_1h,
        "txn_count_24h": txn_24h,
        "amount_sum_24h": amount_sum_24h,
        "customer_age_days": age_days,
        "distance_from_home_km": distance,
        LABEL: label,
    })


def write(path: Path, frame: pd.DataFrame) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, index=False)
    return path


def window_of(frame: pd.DataFrame) -> tuple[datetime, datetime]:
    """[start, end) covering every row of `frame`."""
    stamps = pd.to_datetime(frame[TIMESTAMP], utc=True)
    return stamps.min().to_pydatetime(), stamps.max().to_pydatetime() + timedelta(seconds=1)


ID_COLUMNS = ("transaction_id", "customer_id", "merchant_id")
