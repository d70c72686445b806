"""Generated data for the monitoring tests: reference data and its profile, prediction-log batches with a
controllable shift."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from loopline_monitoring.profiles import build_profile

from loopline.events.v1 import predictions_pb2
from loopline.profiles.v1 import profile_pb2

NUMERIC = [f"f{i:02d}" for i in range(8)]
CATEGORICAL = ["merchant_category"]
CATEGORIES = ["grocery", "travel", "online", "fuel", "dining"]
CATEGORY_P = np.array([0.4, 0.1, 0.25, 0.15, 0.1])
OUTPUT = "probability"


@dataclass
class Shift:
    """How live data differs from the reference: a mean shift of some numeric features, a category mix."""

    mean: float = 0.0
    features: tuple[str, ...] = ()
    category_p: np.ndarray | None = None  # type: ignore[type-arg]


def _score(numeric: np.ndarray) -> np.ndarray:  # type: ignore[type-arg]
    return 1.0 / (1.0 + np.exp(-(numeric[:, 0] + 0.5 * numeric[:, 1])))


def sample(rng: np.random.Generator, n: int, shift: Shift | None = None) -> tuple[np.ndarray, list[str], np.ndarray]:  # type: ignore[type-arg]
    shift = shift or Shift()
    numeric = rng.normal(size=(n, len(NUMERIC)))
    for name in shift.features:
        numeric[:, NUMERIC.index(name)] += shift.mean
    p = CATEGORY_P if shift.category_p is None else shift.category_p
    categories = list(rng.choice(CATEGORIES, size=n, p=p))
    return numeric, categories, _score(numeric)


def reference_profile(model: str, version: int, *, rows: int = 20_000, seed: int = 7) -> profile_pb2.ReferenceProfile:
    rng = np.random.default_rng(seed)
    numeric, categories, score = sample(rng, rows)
    return build_profile(
        model_name=model, model_version=version,
        numeric={name: numeric[:, j] for j, name in enumerate(NUMERIC)},
        categorical={CATEGORICAL[0]: categories}, prediction=score, prediction_output=OUTPUT,
    )


def batches(
    *,
    model: str,
    version: int,
    n: int,
    batch_size: int = 250,
    seed: int = 1,
    shift: Shift | None = None,
    track: int = predictions_pb2.TRACK_CHAMPION,
    start_time: float = 1_800_000_000.0,
    step_seconds: float = 0.01,
    prefix: str | None = None,
    latency_us: int = 2_000,
    error_every: int = 0,
) -> Iterator[predictions_pb2.PredictionLogBatch]:
    """`n` records of generated traffic in batches, request ids unique per call (or from `prefix`)."""
    rng = np.random.default_rng(seed)
    prefix = prefix or uuid.uuid4().hex[:8]
    numeric, categories, score = sample(rng, n, shift)
    for begin in range(0, n, batch_size):
        batch = predictions_pb2.PredictionLogBatch(batch_id=f"{prefix}-{begin}", producer_instance="test")
        for i in range(begin, min(n, begin + batch_size)):
            record = batch.records.add(
                request_id=f"{prefix}-{i}", model_name=model, model_version=version, track=track,
                latency_us=latency_us + int(rng.integers(0, 500)), protocol="rest", status="ok",
            )
            record.time.FromNanoseconds(int((start_time + i * step_seconds) * 1e9))
            record.entity_ids["customer_id"] = f"C{i % 997:06d}"
            for j, name in enumerate(NUMERIC):
                record.features[name].double_value = float(numeric[i, j])
            record.features[CATEGORICAL[0]].string_value = categories[i]
            if error_every and i % error_every == 0:
                record.status = "INTERNAL"
            else:
                record.outputs[OUTPUT] = float(score[i])
        yield batch
