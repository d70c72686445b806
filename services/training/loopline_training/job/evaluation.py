"""Evaluation of a binary classifier on the hold-out: ranking, probability and threshold metrics, the
confusion matrix, and the curves the report plots. Plain numpy (a torch job need not import sklearn)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

EPS = 1e-15


@dataclass(frozen=True)
class Evaluation:
    metrics: dict[str, float]
    confusion: dict[str, int]  # tn, fp, fn, tp
    roc: tuple[np.ndarray, np.ndarray]  # fpr, tpr
    pr: tuple[np.ndarray, np.ndarray]  # recall, precision
    threshold: float

    def to_json(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "metrics": self.metrics, "confusion_matrix": self.confusion}


def _curve(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative true and false positives at each distinct score, highest score first."""
    order = np.argsort(-p, kind="mergesort")
    p_sorted, y_sorted = p[order], y[order]
    distinct = np.where(np.diff(p_sorted))[0]
    ends = np.r_[distinct, len(y_sorted) - 1]
    tps = np.cumsum(y_sorted)[ends]
    fps = 1 + ends - tps
    return tps.astype(np.float64), fps.astype(np.float64), p_sorted[ends]


def roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    tps, fps, _ = _curve(y, p)
    tpr, fpr = np.r_[0.0, tps / tps[-1]], np.r_[0.0, fps / fps[-1]]
    return float(np.trapezoid(tpr, fpr))


def average_precision(y: np.ndarray, p: np.ndarray) -> float:
    """PR-AUC as average precision: sum over thresholds of precision × recall increase."""
    tps, fps, _ = _curve(y, p)
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def evaluate(y: np.ndarray, p: np.ndarray, *, threshold: float) -> Evaluation:
    """Metrics of positive-class probabilities `p` against 0/1 labels `y` (both classes present)."""
    y = np.asarray(y, dtype=np.int64)
    p = np.asarray(p, dtype=np.float64)
    predicted = (p >= threshold).astype(np.int64)
    tp = int(np.sum((predicted == 1) & (y == 1)))
    fp = int(np.sum((predicted == 1) & (y == 0)))
    fn = int(np.sum((predicted == 0) & (y == 1)))
    tn = int(np.sum((predicted == 0) & (y == 0)))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    clipped = np.clip(p, EPS, 1 - EPS)
    metrics = {
        "roc_auc": roc_auc(y, p),
        "pr_auc": average_precision(y, p),
        "log_loss": float(-np.mean(y * np.log(clipped) + (1 - y) * np.log(1 - clipped))),
        "brier": float(np.mean((p - y) ** 2)),
        "accuracy": (tp + tn) / len(y),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "positive_rate": float(np.mean(y)),
        "predicted_positive_rate": float(np.mean(predicted)),
    }
    tps, fps, _ = _curve(y, p)
    roc = (np.r_[0.0, fps / fps[-1]], np.r_[0.0, tps / tps[-1]])
    pr = (tps / tps[-1], tps / (tps + fps))
    return Evaluation(metrics=metrics, confusion={"tn": tn, "fp": fp, "fn": fn, "tp": tp}, roc=roc, pr=pr,
                      threshold=threshold)
