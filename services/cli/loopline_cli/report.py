"""The demo run's report: one HTML page with PNG plots (matplotlib, Agg), in `.loopline/reports/<run>/`.

Sections: the expected outcomes; the event timeline; drift over time with its threshold; canary weight over
time per rollout with each analysis's result; latency p50/p99 and error rate per track; model metrics per
version; each version's lineage. Everything is read back from the services through the SDK, except the
latencies, which are what the demo's clients measured.
"""

from __future__ import annotations

import html
import json
import statistics
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loopline_common.errors import LooplineError, NotFound

if TYPE_CHECKING:
    from loopline_cli.scenario import Scenario, ScenarioResult

COLOURS = {"pass": "#2e7d32", "fail": "#c62828", "not_enough_data": "#9e9e9e"}


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, folder: Path, name: str) -> str:
    fig.tight_layout()
    fig.savefig(folder / name, dpi=96)
    _plt().close(fig)
    return name


def _esc(value: object) -> str:
    return html.escape(str(value))


def _table(headers: list[str], rows: list[list[object]]) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _when(at: float, origin: float) -> float:
    return at - origin


def write_report(scenario: Scenario, result: ScenarioResult) -> Path:
    """Write the report of a finished (or failed) run; returns the HTML file."""
    stamp = datetime.fromtimestamp(scenario.timeline.started, tz=UTC).strftime("%Y%m%d-%H%M%S")
    folder = scenario.reports / f"{stamp}-{result.profile}"
    folder.mkdir(parents=True, exist_ok=True)
    origin = scenario.timeline.started
    marks = {k: v - origin for k, v in result.marks.items()}
    sections: list[str] = []

    # outcomes
    rows: list[list[object]] = [["PASS" if o.ok else "FAIL", o.name, o.detail] for o in result.outcomes]
    verdict = "every expected outcome happened" if result.ok else "NOT every expected outcome happened"
    error = f"<p class='bad'>stopped early: {_esc(result.error)}</p>" if result.error else ""
    figures = result.figures()
    figure_rows: list[list[object]] = [[k.replace("_", " "), f"{v:.1f} s"] for k, v in figures.items()]
    sections.append(f"<h2>Outcomes: {verdict}</h2>{error}" + _table(["", "outcome", "detail"], rows)
                    + (_table(["figure", "seconds"], figure_rows) if figure_rows else ""))

    # timeline
    sections.append(_timeline(result, origin, folder))
    # drift, canaries, latency, models
    for builder in (_drift, _canaries, _latency, _models):
        try:
            sections.append(builder(scenario, origin, marks, folder))
        except (LooplineError, OSError, ValueError, KeyError) as exc:
            name = builder.__name__.strip("_")
            sections.append(f"<h2>{_esc(name)}</h2><p class='bad'>not available: {_esc(exc)}</p>")
    page = _PAGE.format(title=f"Loopline demo run {stamp} ({result.profile})", body="\n".join(sections))
    out = folder / "report.html"
    out.write_text(page)
    (folder / "run.json").write_text(json.dumps({
        "profile": result.profile, "ok": result.ok, "error": result.error, "figures": figures,
        "outcomes": [o.__dict__ for o in result.outcomes], "marks": marks, "counts": scenario.counts,
        "versions": scenario.versions,
        "timeline": [{"t": round(e.at - origin, 3), "kind": e.kind, "text": e.text} for e in result.timeline],
    }, indent=2, default=str))
    return out


def _timeline(result: ScenarioResult, origin: float, folder: Path) -> str:
    plt = _plt()
    kinds = sorted({e.kind.split(".")[0] for e in result.timeline})
    fig, ax = plt.subplots(figsize=(10, 0.5 + 0.45 * max(1, len(kinds))))
    for e in result.timeline:
        lane = kinds.index(e.kind.split(".")[0])
        colour = "#c62828" if ("rollback" in e.kind or "failed" in e.kind) else (
            "#2e7d32" if "promote" in e.kind else "#1565c0")
        ax.plot(_when(e.at, origin), lane, "o", color=colour, markersize=5)
    ax.set_yticks(range(len(kinds)), kinds)
    ax.set_xlabel("seconds since the run started")
    ax.set_title("event timeline")
    ax.grid(axis="x", alpha=0.3)
    image = _save(fig, folder, "timeline.png")
    rows: list[list[object]] = [[f"{e.at - origin:7.1f}", e.kind, e.text] for e in result.timeline]
    return f"<h2>Event timeline</h2><img src='{image}'>" + _table(["t (s)", "event", "what"], rows)


def _drift(scenario: Scenario, origin: float, marks: dict[str, float], folder: Path) -> str:
    from loopline_cli.scenario import MODEL

    plt = _plt()
    with scenario.endpoints.monitoring() as monitoring:
        windows = [w for status in monitoring.drift_status(MODEL)
                   for w in monitoring.drift_windows(MODEL, version=status.model_version, track=status.track,
                                                     limit=1000)]
    series: dict[str, list[tuple[float, float, float, bool]]] = defaultdict(list)
    for w in windows:
        if w.end is None or w.skipped_reason:
            continue
        series[f"v{w.model_version} {w.track}"].append(
            (w.end.timestamp() - origin, w.drifted_share, w.drifted_share_threshold, w.dataset_drift))
    fig, ax = plt.subplots(figsize=(10, 3.5))
    threshold = 0.0
    for label, points in sorted(series.items()):
        points.sort()
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=3, label=label)
        drifted = [p for p in points if p[3]]
        ax.plot([p[0] for p in drifted], [p[1] for p in drifted], "x", color="#c62828", markersize=8)
        threshold = max(threshold, max((p[2] for p in points), default=0.0))
    if threshold:
        ax.axhline(threshold, color="#c62828", linestyle="--", label=f"threshold {threshold:g}")
    for name in ("drift_injected", "drift_detected"):
        if name in marks:
            ax.axvline(marks[name], color="#555", linestyle=":", label=name.replace("_", " "))
    ax.set_xlabel("seconds since the run started (window end)")
    ax.set_ylabel("drifted share of features")
    ax.set_title("drift per window (x: the window drifted at dataset level)")
    ax.legend(fontsize=7, loc="upper left")
    image = _save(fig, folder, "drift.png")
    return (f"<h2>Drift over time</h2><p>{len(windows)} windows closed; a window drifts when the share of "
            f"drifted features reaches the threshold or the prediction drifted.</p><img src='{image}'>")


def _canaries(scenario: Scenario, origin: float, marks: dict[str, float], folder: Path) -> str:
    from loopline_cli.scenario import MODEL

    plt = _plt()
    with scenario.endpoints.rollout() as rollout:
        try:
            rollouts = rollout.list(model=MODEL, limit=20)
        except NotFound:
            rollouts = []
        histories = [rollout.get(MODEL, rollout_id=r.rollout_id) for r in reversed(rollouts)]
    if not histories:
        return "<h2>Canaries</h2><p>no rollout ran</p>"
    fig, axes = plt.subplots(len(histories), 1, figsize=(10, 2.6 * len(histories)), squeeze=False)
    parts = []
    for ax, (r, decisions) in zip(axes[:, 0], histories, strict=True):
        xs, ys = [], []
        for d in decisions:
            if d.occurred_at is None:
                continue
            x = d.occurred_at.timestamp() - origin
            xs.append(x)
            ys.append(d.weight)
            for c in d.checks:
                ax.plot(x, d.weight, "o", color=COLOURS.get(c.outcome, "#000"), markersize=7, alpha=0.6)
        ax.step(xs, ys, where="post", color="#1565c0")
        ax.set_ylim(-5, 105)
        ax.set_ylabel("canary %")
        ax.set_title(f"v{r.candidate_version} vs v{r.champion_version}: {r.phase} "
                     "(dots: analyses; green pass, red fail, grey not enough data)", fontsize=9)
        rows: list[list[object]] = []
        for d in decisions:
            checks = "; ".join(f"{c.name} {c.value:.3g} {c.outcome} ({c.condition})" for c in d.checks)
            at = f"{d.occurred_at.timestamp() - origin:.1f}" if d.occurred_at else ""
            rows.append([at, d.decision, d.step, f"{d.weight}%", checks, d.reason])
        parts.append(f"<h3>v{r.candidate_version}: {_esc(r.phase)} (rollout {_esc(r.rollout_id[:8])})</h3>"
                     + _table(["t (s)", "decision", "step", "weight", "checks", "reason"], rows))
    axes[-1, 0].set_xlabel("seconds since the run started")
    image = _save(fig, folder, "canaries.png")
    return f"<h2>Canaries</h2><img src='{image}'>" + "".join(parts)


def _latency(scenario: Scenario, origin: float, marks: dict[str, float], folder: Path) -> str:
    plt = _plt()
    samples = scenario.traffic.samples if scenario.traffic is not None else []
    if not samples:
        return "<h2>Latency and errors</h2><p>no traffic</p>"
    bucket = 5.0 if scenario.profile.name == "default" else 2.0
    per: dict[str, dict[int, list[Any]]] = defaultdict(lambda: defaultdict(list))
    for s in samples:
        per[s.track or "error"][int((s.at - origin) // bucket)].append(s)
    fig, (lat, err) = plt.subplots(2, 1, figsize=(10, 5.5), sharex=True)
    rows: list[list[object]] = []
    for track, buckets in sorted(per.items()):
        keys = sorted(buckets)
        xs = [k * bucket for k in keys]
        p50, p99, rates = [], [], []
        for k in keys:
            values = sorted(s.seconds * 1000 for s in buckets[k])
            p50.append(values[len(values) // 2])
            p99.append(values[min(len(values) - 1, int(len(values) * 0.99))])
            rates.append(sum(not s.ok for s in buckets[k]) / len(buckets[k]))
        lat.plot(xs, p50, label=f"{track} p50")
        lat.plot(xs, p99, linestyle="--", label=f"{track} p99")
        err.plot(xs, rates, label=track)
        every = [s.seconds * 1000 for b in buckets.values() for s in b]
        quantiles = statistics.quantiles(every, n=100) if len(every) > 1 else every * 99
        failures = sum(not s.ok for b in buckets.values() for s in b)
        rows.append([track, len(every), f"{quantiles[49]:.1f}", f"{quantiles[98]:.1f}", failures])
    lat.set_ylabel("client latency, ms")
    lat.set_yscale("log")
    lat.legend(fontsize=7)
    err.set_ylabel("error rate")
    err.set_xlabel("seconds since the run started")
    for ax in (lat, err):
        for name in ("drift_injected", "v2_promoted", "bad_challenger", "bad_rolled_back"):
            if name in marks:
                ax.axvline(marks[name], color="#555", linestyle=":")
    image = _save(fig, folder, "latency.png")
    by_protocol: dict[str, int] = defaultdict(int)
    for s in samples:
        by_protocol[s.protocol] += 1
    mix = ", ".join(f"{k} {v}" for k, v in sorted(by_protocol.items()))
    return (f"<h2>Latency and errors per track</h2><p>As the demo's clients measured them ({mix} requests); "
            f"dotted lines: drift injected, v2 promoted, bad challenger, rolled back.</p><img src='{image}'>"
            + _table(["track", "requests", "p50 ms", "p99 ms", "errors"], rows))


def _models(scenario: Scenario, origin: float, marks: dict[str, float], folder: Path) -> str:
    from loopline_cli.scenario import MODEL

    plt = _plt()
    with scenario.endpoints.registry() as registry:
        versions = sorted(registry.list_versions(MODEL), key=lambda v: v.version)
        lineages = [registry.lineage(MODEL, v.version) for v in versions]
    names = ["roc_auc", "pr_auc", "log_loss", "f1"]
    fig, ax = plt.subplots(figsize=(10, 3.2))
    width = 0.8 / len(names)
    for i, metric in enumerate(names):
        ax.bar([v.version + (i - len(names) / 2) * width for v in versions],
               [v.metrics.get(metric, 0.0) for v in versions], width=width, label=metric)
    ax.set_xticks([v.version for v in versions], [f"v{v.version}" for v in versions])
    ax.set_title("hold-out metrics per version")
    ax.legend(fontsize=7)
    image = _save(fig, folder, "models.png")
    metric_rows: list[list[object]] = [
        [f"v{v.version}", ",".join(v.aliases) or "-", v.stage,
         *(f"{v.metrics[m]:.4f}" if m in v.metrics else "-" for m in names)] for v in versions]
    lineage_rows: list[list[object]] = []
    for item in lineages:
        spans = "; ".join(f"@{s.alias} {_rel(s.start, origin)}..{_rel(s.end, origin)}" for s in item.aliases)
        verdicts = "; ".join(f"{d.decision} {d.weight}%" for d in item.rollouts[-3:])
        lineage_rows.append([f"v{item.version.version}", item.lineage.trigger or "manual",
                             f"v{item.lineage.parent_version}" if item.lineage.parent_version else "-",
                             item.lineage.feature_service, item.lineage.training_set_hash[:12], item.run_id[:12],
                             item.lineage.reason[:120], spans, verdicts])
    return ("<h2>Models</h2><img src='" + image + "'>"
            + _table(["version", "aliases", "stage", *names], metric_rows)
            + "<h2>Lineage</h2>"
            + _table(["version", "trigger", "parent", "features", "training set", "MLflow run", "reason",
                      "aliases (s since start)", "last rollout decisions"], lineage_rows))


def _rel(moment: datetime | None, origin: float) -> str:
    return "now" if moment is None else f"{moment.timestamp() - origin:.0f}"


_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; max-width: 1100px; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 13px; }}
td, th {{ border: 1px solid #ccc; padding: 3px 6px; text-align: left; vertical-align: top; }}
th {{ background: #f3f3f3; }}
img {{ max-width: 100%; }}
.bad {{ color: #c62828; }}
</style></head>
<body><h1>{title}</h1>
{body}
</body></html>
"""
