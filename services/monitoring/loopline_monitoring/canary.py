"""Champion vs challenger over a window of the prediction log. Pure: the caller gives the records."""

from __future__ import annotations

from typing import cast

import numpy as np
import numpy.typing as npt
from google.protobuf import timestamp_pb2

from loopline.events.v1 import predictions_pb2
from loopline.monitoring.v1 import monitoring_pb2
from loopline_monitoring import stats
from loopline_monitoring.frames import CanaryFrame

CHAMPION = predictions_pb2.TRACK_CHAMPION
CHALLENGER = predictions_pb2.TRACK_CHALLENGER
SHADOW = predictions_pb2.TRACK_SHADOW
TRACK_NAMES: dict[int, str] = {
    predictions_pb2.TRACK_UNSPECIFIED: "unspecified",
    CHAMPION: "champion",
    CHALLENGER: "challenger",
    SHADOW: "shadow",
}
# Deciles of the champion's predictions are the PSI bins.
PSI_BINS = 10


def _timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(round(seconds * 1e9))
    return ts


def _mode(values: npt.NDArray[np.int64]) -> int:
    if values.shape[0] == 0:
        return 0
    uniques, counts = np.unique(values, return_counts=True)
    return int(uniques[np.argmax(counts)])


def prediction_psi(champion: npt.NDArray[np.float64], challenger: npt.NDArray[np.float64]) -> float:
    """PSI of the challenger's predictions against the champion's deciles (open-ended edge bins)."""
    edges = stats.quantile_edges(champion, PSI_BINS)
    reference = stats.fractions(stats.bin_counts(edges, champion))
    current = stats.fractions(stats.bin_counts(edges, challenger))
    return stats.psi(reference, current)


def analyze(
    frame: CanaryFrame,
    *,
    model_name: str,
    window_seconds: float,
    min_records: int,
    decision_threshold: float,
) -> monitoring_pb2.GetCanaryAnalysisResponse:
    """The canary comparison over the records of `frame` in the last `window_seconds` of event time."""
    response = monitoring_pb2.GetCanaryAnalysisResponse(model_name=model_name, min_records=min_records)
    response.shadow.decision_threshold = decision_threshold
    if len(frame) == 0:
        return response
    newest = float(frame.time.max())
    inside = np.flatnonzero(frame.time >= newest - window_seconds)
    frame = frame.take(inside)
    response.window.start.CopyFrom(_timestamp(float(frame.time.min())))
    response.window.end.CopyFrom(_timestamp(newest))
    response.window.count = len(frame)

    predictions: dict[int, npt.NDArray[np.float64]] = {}
    for track in sorted(set(frame.track.tolist())):
        rows = frame.track == track
        ok = rows & frame.ok
        latency = frame.latency_us[rows].astype(np.float64) / 1e6
        count = int(rows.sum())
        errors = count - int(ok.sum())
        analysis = monitoring_pb2.TrackAnalysis(
            track=cast("predictions_pb2.Track", int(track)), version=_mode(frame.version[rows]), count=count,
            errors=errors,
            error_rate=errors / count if count else 0.0,
        )
        if latency.shape[0]:
            p50, p90, p95, p99 = np.percentile(latency, [50, 90, 95, 99])
            analysis.latency.CopyFrom(
                monitoring_pb2.LatencyPercentiles(p50=float(p50), p90=float(p90), p95=float(p95), p99=float(p99))
            )
        served = frame.prediction[ok]
        served = served[~np.isnan(served)]
        predictions[int(track)] = served
        if served.shape[0]:
            analysis.prediction_mean = float(served.mean())
        response.tracks.append(analysis)

    response.champion_version = _mode(frame.version[frame.track == CHAMPION])
    challenger_rows = (frame.track == CHALLENGER) | (frame.track == SHADOW)
    response.challenger_version = _mode(frame.version[challenger_rows])
    champion = predictions.get(CHAMPION, np.zeros(0))
    challenger = predictions.get(CHALLENGER, np.zeros(0))
    if challenger.shape[0] < min_records:  # shadow mode: the challenger answers on the shadow track
        challenger = predictions.get(SHADOW, np.zeros(0))
    if champion.shape[0] >= min_records and challenger.shape[0] >= min_records:
        response.prediction_psi = prediction_psi(champion, challenger)

    _shadow(frame, response.shadow)
    return response


def _shadow(frame: CanaryFrame, out: monitoring_pb2.ShadowAgreement) -> None:
    """Pair each successful shadow record with the served record of the same request id."""
    usable = frame.ok & ~np.isnan(frame.prediction)
    shadow_rows = np.flatnonzero(usable & (frame.track == SHADOW))
    if shadow_rows.shape[0] == 0:
        return
    served_rows = np.flatnonzero(usable & (frame.track != SHADOW))
    served = {frame.request_ids[i]: frame.prediction[i] for i in served_rows}
    pairs = [(frame.prediction[i], served[frame.request_ids[i]]) for i in shadow_rows if frame.request_ids[i] in served]
    out.pairs = len(pairs)
    if pairs:
        shadow_p = np.array([p[0] for p in pairs])
        served_p = np.array([p[1] for p in pairs])
        threshold = out.decision_threshold
        out.agreement_rate = float(np.mean((shadow_p >= threshold) == (served_p >= threshold)))
        out.mean_abs_difference = float(np.mean(np.abs(shadow_p - served_p)))
