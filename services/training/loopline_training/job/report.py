"""The evaluation report artifact: metrics as JSON, one PNG of plots (ROC, precision-recall, calibration,
score distribution by class, training history), and a markdown page that ties them together."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from loopline_training.job.evaluation import Evaluation


def write_report(
    folder: Path, *, evaluation: Evaluation, y: np.ndarray, p: np.ndarray, title: str, facts: dict[str, Any],
    history: dict[str, list[float]],
) -> list[Path]:
    """Write the report into `folder`; the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    # One figure (one PNG) for every plot: drawing and saving dominate the report's cost.
    fig, axes = plt.subplots(2, 3 if history else 2, figsize=(13.5 if history else 9, 8))
    roc_ax, pr_ax, cal_ax, score_ax = axes[0][0], axes[0][1], axes[1][0], axes[1][1]

    fpr, tpr = evaluation.roc
    roc_ax.plot(fpr, tpr, label=f"ROC-AUC {evaluation.metrics['roc_auc']:.4f}")
    roc_ax.plot([0, 1], [0, 1], linestyle="--", color="grey")
    roc_ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (hold-out)")
    roc_ax.legend(loc="lower right")

    recall, precision = evaluation.pr
    pr_ax.step(recall, precision, where="post", label=f"PR-AUC {evaluation.metrics['pr_auc']:.4f}")
    pr_ax.axhline(float(np.mean(y)), linestyle="--", color="grey")
    pr_ax.set(xlabel="recall", ylabel="precision", title="Precision-recall (hold-out)", ylim=(0, 1.02))
    pr_ax.legend(loc="upper right")

    edges = np.linspace(0, 1, 11)
    index = np.clip(np.digitize(p, edges[1:-1]), 0, 9)
    means = [(float(p[index == b].mean()), float(y[index == b].mean())) for b in range(10) if np.any(index == b)]
    if means:
        cal_ax.plot(*zip(*means, strict=True), marker="o", label="model")
    cal_ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect")
    cal_ax.set(xlabel="mean predicted probability", ylabel="observed positive rate", title="Calibration (hold-out)")
    cal_ax.legend(loc="upper left")

    bins = [i / 40 for i in range(41)]
    score_ax.hist(p[y == 0], bins=bins, alpha=0.6, density=True, label="label 0")
    score_ax.hist(p[y == 1], bins=bins, alpha=0.6, density=True, label="label 1")
    score_ax.axvline(evaluation.threshold, color="black", linestyle=":", label=f"threshold {evaluation.threshold:g}")
    score_ax.set(xlabel="P(label 1)", ylabel="density", title="Scores by class (hold-out)", yscale="log")
    score_ax.legend(loc="upper center")

    if history:
        history_ax = axes[0][2]
        for name, values in sorted(history.items()):
            if "loss" in name:
                history_ax.plot(range(1, len(values) + 1), values, label=name)
        history_ax.set(xlabel="iteration / epoch", ylabel="loss", title="Training history")
        history_ax.legend(loc="upper right")
        axes[1][2].axis("off")
    fig.tight_layout()
    fig.savefig(folder / "evaluation.png", dpi=72)
    plt.close(fig)
    written.append(folder / "evaluation.png")

    data = {"title": title, **facts, **evaluation.to_json()}
    (folder / "evaluation.json").write_text(json.dumps(data, indent=2, sort_keys=True))
    written.append(folder / "evaluation.json")

    c = evaluation.confusion
    rows = "\n".join(f"| {name} | {value:.6f} |" for name, value in evaluation.metrics.items())
    fact_rows = "\n".join(f"| {name} | {value} |" for name, value in facts.items())
    plots = "![ROC, precision-recall, calibration, scores and training history](evaluation.png)"
    (folder / "report.md").write_text(f"""# {title}

| fact | value |
|---|---|
{fact_rows}

## Hold-out metrics (threshold {evaluation.threshold:g})

| metric | value |
|---|---|
{rows}

## Confusion matrix

| | predicted 0 | predicted 1 |
|---|---|---|
| **label 0** | {c['tn']} | {c['fp']} |
| **label 1** | {c['fn']} | {c['tp']} |

{plots}
""")
    written.append(folder / "report.md")
    return written
