"""Same spec and same data give the same metrics, for both families (the pure part of the job, run in
this process: the split, the encoding, training with the spec's seed and threads, and evaluation); the
ONNX export of each passes the parity gate; and the metrics agree with scikit-learn's."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from loopline_training.job import parity
from loopline_training.job.data import load_training_set
from loopline_training.job.evaluation import evaluate
from loopline_training.job.lgbm import snap_thresholds
from loopline_training.job.pipeline import fit
from loopline_training.spec import normalize_spec

from tests.training.support import make_spec

Dataset = tuple[Path, tuple[datetime, datetime]]


@pytest.mark.parametrize("family", ["lightgbm", "torch_mlp"])
def test_same_spec_and_data_give_the_same_metrics(family: str, dataset: Dataset, tmp_path: Path) -> None:
    spec = normalize_spec(make_spec(*dataset, family=family))
    data = load_training_set(spec=spec, job_id="determinism", work_dir=tmp_path, features=None)
    first, second = fit(spec, data), fit(spec, data)
    assert first.evaluation.metrics == second.evaluation.metrics
    assert first.evaluation.confusion == second.evaluation.confusion
    assert np.array_equal(first.native, second.native)
    assert first.history == second.history
    assert first.best_iteration == second.best_iteration

    gate = parity.check(first.model.to_onnx(len(first.encoding.features)), first.x_holdout, first.native)
    assert gate.passed, gate.message()
    assert gate.max_abs_diff <= 1e-5

    other_seed = normalize_spec(make_spec(*dataset, family=family))
    other_seed.seed = spec.seed + 1
    if family == "torch_mlp":  # the seed drives initialisation and batch order
        assert not np.array_equal(fit(other_seed, data).native, first.native)


def test_the_time_split_holds_out_the_newest_rows(dataset: Dataset, tmp_path: Path) -> None:
    spec = normalize_spec(make_spec(*dataset))
    data = load_training_set(spec=spec, job_id="split", work_dir=tmp_path, features=None)
    trained = fit(spec, data)
    parts = trained.split
    ts = data.timestamp
    assert parts.train[ts].max() < parts.early_stopping[ts].min()
    assert parts.early_stopping[ts].max() < parts.holdout[ts].min()
    assert len(parts.train) + len(parts.early_stopping) + len(parts.holdout) == data.rows
    assert abs(len(parts.holdout) / data.rows - 0.2) < 0.01


def test_metrics_agree_with_scikit_learn() -> None:
    from sklearn import metrics

    rng = np.random.default_rng(3)
    y = (rng.random(2000) < 0.1).astype(int)
    p = np.clip(rng.random(2000) * 0.6 + y * 0.3, 0, 1).round(2)  # ties on purpose
    ours = evaluate(y, p, threshold=0.5)
    assert ours.metrics["roc_auc"] == pytest.approx(metrics.roc_auc_score(y, p), abs=1e-12)
    assert ours.metrics["pr_auc"] == pytest.approx(metrics.average_precision_score(y, p), abs=1e-12)
    assert ours.metrics["log_loss"] == pytest.approx(metrics.log_loss(y, np.clip(p, 1e-15, 1 - 1e-15)), abs=1e-12)
    assert ours.metrics["brier"] == pytest.approx(metrics.brier_score_loss(y, p), abs=1e-12)
    predicted = (p >= 0.5).astype(int)
    assert ours.metrics["f1"] == pytest.approx(metrics.f1_score(y, predicted), abs=1e-12)
    assert ours.metrics["precision"] == pytest.approx(metrics.precision_score(y, predicted), abs=1e-12)
    assert ours.metrics["recall"] == pytest.approx(metrics.recall_score(y, predicted), abs=1e-12)
    tn, fp, fn, tp = metrics.confusion_matrix(y, predicted).ravel()
    assert ours.confusion == {"tn": tn, "fp": fp, "fn": fn, "tp": tp}


def test_snapped_thresholds_are_float32_and_never_above_the_original() -> None:
    text = "\n".join([
        "tree", "version=v4", "tree_sizes=123", "", "Tree=0", "num_leaves=3",
        "threshold=12.84999990463257 3", "decision_type=2 1", "end of trees",
    ])
    snapped = snap_thresholds(text)
    assert "tree_sizes" not in snapped
    line = next(x for x in snapped.split("\n") if x.startswith("threshold="))
    numeric, categorical = line.removeprefix("threshold=").split()
    assert categorical == "3"  # a categorical split's threshold is an index: untouched
    value = float(numeric)
    assert float(np.float32(value)) == value and value <= 12.84999990463257
    assert float(np.nextafter(np.float32(value), np.float32(np.inf))) > 12.84999990463257
