"""Training–serving skew: the feature values a model was served vs the values the offline store holds for the
same entity at the same time (point in time).

A deterministic sample of logged predictions (by request id, so a restart samples the same ones) is kept in
the state store; a worker sends them to the features service in batches and folds the answers into
per-feature counters: how many pairs were compared, how many differ, how many the offline store did not
have, and a bounded reservoir of both sides for a distribution distance. Pure functions here; the worker
and the adapter live in core.py and features_client.py.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from loopline.monitoring.v1 import monitoring_pb2
from loopline_monitoring import stats

# Numbers equal within this relative tolerance are the same value (float32 round trips, parquet).
RELATIVE_TOLERANCE = 1e-6
ABSOLUTE_TOLERANCE = 1e-9
# Values of each side kept per feature for the distribution distance.
RESERVOIR = 2000


def sampled(request_id: str, rate: float) -> bool:
    """Whether a prediction is in the skew sample (deterministic in its request id)."""
    if rate <= 0:
        return False
    if rate >= 1:
        return True
    return zlib.crc32(request_id.encode()) < rate * 2**32


Value = float | str | None


def _same(served: Value, offline: Value) -> bool:
    if served is None or offline is None:
        return served is None and offline is None
    if isinstance(served, str) or isinstance(offline, str):
        return str(served) == str(offline)
    return math.isclose(served, offline, rel_tol=RELATIVE_TOLERANCE, abs_tol=ABSOLUTE_TOLERANCE)


@dataclass
class FeatureCounters:
    kind: str = "numeric"
    compared: int = 0
    mismatches: int = 0
    offline_missing: int = 0
    served: list[Any] | None = None
    offline: list[Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "compared": self.compared, "mismatches": self.mismatches,
            "offline_missing": self.offline_missing, "served": self.served or [], "offline": self.offline or [],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FeatureCounters:
        return cls(
            kind=data["kind"], compared=data["compared"], mismatches=data["mismatches"],
            offline_missing=data["offline_missing"], served=list(data["served"]), offline=list(data["offline"]),
        )


def fold(
    counters: dict[str, FeatureCounters],
    served_rows: Sequence[Mapping[str, Value]],
    offline_rows: Sequence[Mapping[str, Value] | None],
) -> None:
    """Add pairs (served values, offline values for the same entity and time) to the counters.

    A None offline row means the offline store had nothing for that entity and time; a feature absent from
    an offline row is missing offline. Reservoirs keep the newest RESERVOIR values of each side.
    """
    for served, offline in zip(served_rows, offline_rows, strict=True):
        for name, value in served.items():
            c = counters.setdefault(name, FeatureCounters(kind="categorical" if isinstance(value, str) else "numeric"))
            other = None if offline is None else offline.get(name)
            if other is None and value is not None:
                c.offline_missing += 1
                continue
            c.compared += 1
            if not _same(value, other):
                c.mismatches += 1
            c.served = ((c.served or []) + [value])[-RESERVOIR:]
            c.offline = ((c.offline or []) + [other])[-RESERVOIR:]


def distance(c: FeatureCounters) -> tuple[str, float]:
    """Normalised Wasserstein distance for numbers, Jensen–Shannon distance for categories."""
    served = [v for v in c.served or [] if v is not None]
    offline = [v for v in c.offline or [] if v is not None]
    if not served or not offline:
        return ("jensen_shannon" if c.kind == "categorical" else "wasserstein"), 0.0
    if c.kind == "categorical":
        labels = sorted({str(v) for v in served} | {str(v) for v in offline})
        index = {label: i for i, label in enumerate(labels)}
        a = np.bincount([index[str(v)] for v in served], minlength=len(labels)).astype(np.float64)
        b = np.bincount([index[str(v)] for v in offline], minlength=len(labels)).astype(np.float64)
        return "jensen_shannon", stats.jensen_shannon(b, a)
    reference = stats.SortedSample(np.asarray(offline, dtype=np.float64))
    return "wasserstein", stats.normed_wasserstein(reference, np.asarray(served, dtype=np.float64))


def report(counters: Mapping[str, FeatureCounters]) -> list[monitoring_pb2.FeatureSkew]:
    out = []
    for name in sorted(counters):
        c = counters[name]
        method, value = distance(c)
        out.append(
            monitoring_pb2.FeatureSkew(
                feature=name, kind=c.kind, compared=c.compared, mismatches=c.mismatches,
                mismatch_rate=c.mismatches / c.compared if c.compared else 0.0, distance_method=method,
                distance=value if math.isfinite(value) else 1e300, offline_missing=c.offline_missing,
            )
        )
    return out
