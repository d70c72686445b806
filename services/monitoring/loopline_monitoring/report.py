"""The HTML drift report of a model: status, drift over time with thresholds, reference vs current
distributions of the latest window, skew and the canary comparison; plots as PNG (matplotlib, Agg).

`render` returns the page with the PNGs embedded as data URIs (one self-contained file, what
`loopline drift report` writes) and the PNGs themselves; `save` writes index.html (linking the PNG files)
and the PNGs into a folder.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from matplotlib.figure import Figure

from loopline.monitoring.v1 import monitoring_pb2
from loopline_monitoring.canary import TRACK_NAMES
from loopline_monitoring.profiles import PREDICTION

ALERT_NAMES = {monitoring_pb2.ALERT_STATE_OK: "ok", monitoring_pb2.ALERT_STATE_DRIFTING: "drifting"}
MAX_PANELS = 24

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #1d2733; max-width: 1200px; }
h1 { font-size: 1.6em; } h2 { margin-top: 2em; border-bottom: 1px solid #ccd; } h3 { margin-top: 1.5em; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }
th, td { border: 1px solid #ccd; padding: 0.25em 0.6em; text-align: right; }
th { background: #eef1f6; } td.l, th.l { text-align: left; }
.drift { color: #b00020; font-weight: 600; } .ok { color: #1b7f3b; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
.muted { color: #667; }
"""


@dataclass
class Report:
    html: str  # self-contained (PNG data URIs)
    images: dict[str, bytes] = field(default_factory=dict)  # file name -> PNG
    linked_html: str = ""  # the same page linking the PNG files by name


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return buffer.getvalue()


def _grid(count: int) -> tuple[int, int]:
    columns = min(4, max(1, count))
    return math.ceil(count / columns), columns


def _track(track: int) -> str:
    return TRACK_NAMES.get(track, str(track))


def _when(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _share_plot(history: Sequence[monitoring_pb2.DriftWindowResult], title: str) -> bytes:
    figure = Figure(figsize=(9, 2.8))
    ax = figure.subplots()
    windows = [w for w in history if not w.skipped_reason]
    xs = [w.sequence for w in windows]
    ax.plot(xs, [w.drifted_share for w in windows], marker="o", ms=3, label="drifted share")
    if windows:
        ax.axhline(windows[-1].drifted_share_threshold, color="#b00020", ls="--", lw=1, label="threshold")
    drifted = [w for w in windows if w.dataset_drift]
    ax.scatter([w.sequence for w in drifted], [w.drifted_share for w in drifted], color="#b00020", zorder=3,
               s=18, label="dataset drift")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("window")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="upper left")
    return _png(figure)


def _scores_plot(history: Sequence[monitoring_pb2.DriftWindowResult]) -> bytes | None:
    series: dict[tuple[str, str], list[tuple[int, float, float, bool]]] = {}
    for w in history:
        for s in w.scores:
            if s.deciding:
                d = s.drift
                value = d.p_value if d.HasField("p_value") else d.score
                series.setdefault((d.feature, d.method), []).append((w.sequence, value, d.threshold, d.drifted))
    if not series:
        return None
    names = sorted(series, key=lambda k: (k[0] == PREDICTION, k[0]))[:MAX_PANELS]
    rows, columns = _grid(len(names))
    figure = Figure(figsize=(3.2 * columns, 2.2 * rows))
    axes = figure.subplots(rows, columns, squeeze=False)
    for ax, (feature, method) in zip(axes.flat, names, strict=False):
        points = series[(feature, method)]
        xs = [p[0] for p in points]
        ax.plot(xs, [p[1] for p in points], lw=1, marker=".", ms=3)
        ax.step(xs, [p[2] for p in points], where="mid", color="#b00020", ls="--", lw=1)
        hits = [p for p in points if p[3]]
        ax.scatter([p[0] for p in hits], [p[1] for p in hits], color="#b00020", s=10, zorder=3)
        pvalue = method in ("ks", "chi2")
        if pvalue:
            ax.set_yscale("log")
        ax.set_title(f"{feature} · {method}{' p-value' if pvalue else ''}", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    figure.tight_layout()
    return _png(figure)


def _histograms_plot(window: monitoring_pb2.DriftWindowResult) -> bytes | None:
    histograms = [h for h in window.histograms if h.reference][:MAX_PANELS]
    if not histograms:
        return None
    drifted = {s.drift.feature for s in window.scores if s.deciding and s.drift.drifted}
    rows, columns = _grid(len(histograms))
    figure = Figure(figsize=(3.2 * columns, 2.3 * rows))
    axes = figure.subplots(rows, columns, squeeze=False)
    for ax, h in zip(axes.flat, histograms, strict=False):
        n = len(h.reference)
        xs = list(range(n))
        ax.bar([x - 0.2 for x in xs], list(h.reference), width=0.4, label="reference", color="#8aa1c1")
        ax.bar([x + 0.2 for x in xs], list(h.current), width=0.4, label="current", color="#e39b3b")
        if h.categories:
            ax.set_xticks(xs, [c[:10] for c in h.categories], rotation=60, fontsize=6)
        else:
            edges = list(h.edges)
            labels = [f"<{edges[1]:.3g}" if i == 0 else f"≥{edges[i]:.3g}" for i in range(n)] if len(edges) > 1 else []
            ax.set_xticks(xs[: len(labels)], labels, rotation=60, fontsize=6)
        ax.set_title(h.feature + ("  (drifted)" if h.feature in drifted else ""), fontsize=8,
                     color="#b00020" if h.feature in drifted else "black")
        ax.tick_params(axis="y", labelsize=7)
    axes.flat[0].legend(fontsize=6)
    for ax in list(axes.flat)[len(histograms):]:
        ax.axis("off")
    figure.tight_layout()
    return _png(figure)


def _skew_plot(versions: Sequence[monitoring_pb2.VersionSkew]) -> bytes | None:
    entries = [(v.model_version, f) for v in versions for f in v.features]
    if not entries:
        return None
    figure = Figure(figsize=(9, 0.3 * len(entries) + 1.2))
    ax = figure.subplots()
    labels = [f"v{v} {f.feature}" for v, f in entries]
    ax.barh(labels, [f.mismatch_rate for _, f in entries], color="#c15b5b")
    ax.set_xlim(0, 1)
    ax.set_xlabel("mismatch rate (served vs offline)")
    ax.invert_yaxis()
    ax.tick_params(labelsize=7)
    return _png(figure)


def render(
    *,
    model_name: str,
    status: monitoring_pb2.GetDriftStatusResponse,
    history: dict[tuple[int, int], list[monitoring_pb2.DriftWindowResult]],
    skew: monitoring_pb2.GetSkewReportResponse,
    canary: monitoring_pb2.GetCanaryAnalysisResponse | None,
    generated_at: float,
) -> Report:
    images: dict[str, bytes] = {}
    parts: list[str] = []
    e = html.escape

    def image(name: str, png: bytes | None, alt: str) -> None:
        if png is None:
            return
        images[name] = png
        parts.append(f'<img src="{{{name}}}" alt="{e(alt)}">')

    parts.append(f"<h1>Drift report: {e(model_name)}</h1>")
    parts.append(f'<p class="muted">Generated {_when(generated_at)} by loopline monitoring.</p>')
    parts.append("<h2>Status</h2><table><tr><th>version</th><th class=l>track</th><th class=l>alert</th>"
                 "<th>windows</th><th>open window</th><th>drifted share</th><th>threshold</th><th class=l>last window"
                 "</th></tr>")
    for s in status.statuses:
        latest = s.latest
        alert = ALERT_NAMES.get(s.state, "?")
        span = (f"{_when(latest.window.start.ToNanoseconds() / 1e9)} – {_when(latest.window.end.ToNanoseconds() / 1e9)}"
                f" ({latest.window.count} records)") if s.HasField("latest") else "—"
        parts.append(
            f"<tr><td>{s.model_version}</td><td class=l>{_track(s.track)}</td>"
            f"<td class=l><span class={'drift' if alert == 'drifting' else 'ok'}>{alert}</span></td>"
            f"<td>{s.windows_closed}</td><td>{s.open_window_count}</td>"
            f"<td>{latest.drifted_share:.2f}</td><td>{latest.drifted_share_threshold:.2f}</td>"
            f"<td class=l>{e(span)}</td></tr>"
        )
    parts.append("</table>")

    for (version, track), windows in sorted(history.items()):
        if not windows:
            continue
        slug = f"v{version}-{_track(track)}"
        latest = windows[-1]
        parts.append(f"<h2>Version {version}, {_track(track)} track</h2>")
        if latest.skipped_reason:
            parts.append(f"<p>The latest window was not compared: {e(latest.skipped_reason)}.</p>")
        parts.append("<h3>Drift over time</h3>")
        image(f"{slug}-share.png", _share_plot(windows, f"{model_name} v{version} {_track(track)}: drifted share"),
              "drifted share per window")
        image(f"{slug}-scores.png", _scores_plot(windows), "score per feature and window, with thresholds")
        parts.append(f"<h3>Latest window #{latest.sequence}: reference vs current</h3>")
        image(f"{slug}-histograms.png", _histograms_plot(latest), "reference vs current distributions")
        parts.append("<table><tr><th class=l>feature</th><th class=l>method</th><th>score</th><th>p-value</th>"
                     "<th>threshold</th><th class=l>drifted</th></tr>")
        for score in latest.scores:
            d = score.drift
            p = f"{d.p_value:.3g}" if d.HasField("p_value") else "—"
            mark = "<span class=drift>yes</span>" if d.drifted else "no"
            parts.append(
                f"<tr><td class=l>{e(d.feature)}</td>"
                f"<td class=l>{e(d.method)}{'' if score.deciding else ' (info)'}</td>"
                f"<td>{d.score:.4g}</td><td>{p}</td><td>{d.threshold:.4g}</td><td class=l>{mark}</td></tr>"
            )
        parts.append("</table>")

    parts.append("<h2>Training–serving skew</h2>")
    if not skew.enabled:
        parts.append("<p>No features service is configured, so no skew is computed.</p>")
    elif not skew.versions:
        parts.append("<p>No sampled prediction has been compared yet.</p>")
    else:
        image("skew.png", _skew_plot(skew.versions), "mismatch rate per feature")
        parts.append("<table><tr><th>version</th><th class=l>feature</th><th>compared</th><th>mismatches</th>"
                     "<th>rate</th><th class=l>distance</th><th>offline missing</th></tr>")
        for v in skew.versions:
            for f in v.features:
                parts.append(
                    f"<tr><td>{v.model_version}</td><td class=l>{e(f.feature)}</td><td>{f.compared}</td>"
                    f"<td>{f.mismatches}</td><td>{f.mismatch_rate:.3f}</td>"
                    f"<td class=l>{e(f.distance_method)} {f.distance:.4g}</td><td>{f.offline_missing}</td></tr>"
                )
        parts.append("</table>")

    parts.append("<h2>Canary comparison</h2>")
    if canary is None or not canary.tracks:
        parts.append("<p>No recent predictions.</p>")
    else:
        start, end = canary.window.start.ToNanoseconds() / 1e9, canary.window.end.ToNanoseconds() / 1e9
        psi = f"{canary.prediction_psi:.4f}" if canary.HasField("prediction_psi") else "— (too few records)"
        parts.append(f"<p>Window {_when(start)} – {_when(end)}, {canary.window.count} records. "
                     f"Champion v{canary.champion_version}, challenger v{canary.challenger_version}; "
                     f"prediction PSI {psi}.</p>")
        parts.append("<table><tr><th class=l>track</th><th>version</th><th>records</th><th>error rate</th>"
                     "<th>p50 s</th><th>p99 s</th><th>mean prediction</th></tr>")
        for t in canary.tracks:
            mean = f"{t.prediction_mean:.4f}" if t.HasField("prediction_mean") else "—"
            parts.append(
                f"<tr><td class=l>{_track(t.track)}</td><td>{t.version}</td><td>{t.count}</td>"
                f"<td>{t.error_rate:.4f}</td><td>{t.latency.p50:.4f}</td><td>{t.latency.p99:.4f}</td>"
                f"<td>{mean}</td></tr>"
            )
        parts.append("</table>")
        if canary.shadow.pairs:
            parts.append(f"<p>Shadow: {canary.shadow.pairs} paired requests, agreement "
                         f"{canary.shadow.agreement_rate:.4f}, mean |Δ| {canary.shadow.mean_abs_difference:.4f}.</p>")

    body = "\n".join(parts)
    head = f"<!doctype html><html><head><meta charset=utf-8><title>Drift report: {e(model_name)}</title>" \
           f"<style>{CSS}</style></head><body>\n"
    page = head + body + "\n</body></html>\n"
    embedded = page
    linked = page
    for name, png in images.items():
        embedded = embedded.replace("{" + name + "}", "data:image/png;base64," + base64.b64encode(png).decode())
        linked = linked.replace("{" + name + "}", name)
    return Report(html=embedded, images=images, linked_html=linked)


def save(report: Report, folder: Path) -> list[str]:
    """Write index.html (linking the PNG files) and the PNGs into `folder`; the file names written."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, png in report.images.items():
        (folder / name).write_bytes(png)
    (folder / "index.html").write_text(report.linked_html)
    (folder / "report.html").write_text(report.html)
    return ["index.html", "report.html", *report.images]
