import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from loopline.events.v1 import drift_pb2 as _drift_pb2
from loopline.events.v1 import predictions_pb2 as _predictions_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AlertState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ALERT_STATE_UNSPECIFIED: _ClassVar[AlertState]
    ALERT_STATE_OK: _ClassVar[AlertState]
    ALERT_STATE_DRIFTING: _ClassVar[AlertState]
ALERT_STATE_UNSPECIFIED: AlertState
ALERT_STATE_OK: AlertState
ALERT_STATE_DRIFTING: AlertState

class TimeWindow(_message.Message):
    __slots__ = ("start", "end", "count")
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    start: _timestamp_pb2.Timestamp
    end: _timestamp_pb2.Timestamp
    count: int
    def __init__(self, start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., count: _Optional[int] = ...) -> None: ...

class GetCanaryAnalysisRequest(_message.Message):
    __slots__ = ("model_name", "window_seconds")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    WINDOW_SECONDS_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    window_seconds: float
    def __init__(self, model_name: _Optional[str] = ..., window_seconds: _Optional[float] = ...) -> None: ...

class LatencyPercentiles(_message.Message):
    __slots__ = ("p50", "p90", "p95", "p99")
    P50_FIELD_NUMBER: _ClassVar[int]
    P90_FIELD_NUMBER: _ClassVar[int]
    P95_FIELD_NUMBER: _ClassVar[int]
    P99_FIELD_NUMBER: _ClassVar[int]
    p50: float
    p90: float
    p95: float
    p99: float
    def __init__(self, p50: _Optional[float] = ..., p90: _Optional[float] = ..., p95: _Optional[float] = ..., p99: _Optional[float] = ...) -> None: ...

class TrackAnalysis(_message.Message):
    __slots__ = ("track", "version", "count", "errors", "error_rate", "latency", "prediction_mean")
    TRACK_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    ERROR_RATE_FIELD_NUMBER: _ClassVar[int]
    LATENCY_FIELD_NUMBER: _ClassVar[int]
    PREDICTION_MEAN_FIELD_NUMBER: _ClassVar[int]
    track: _predictions_pb2.Track
    version: int
    count: int
    errors: int
    error_rate: float
    latency: LatencyPercentiles
    prediction_mean: float
    def __init__(self, track: _Optional[_Union[_predictions_pb2.Track, str]] = ..., version: _Optional[int] = ..., count: _Optional[int] = ..., errors: _Optional[int] = ..., error_rate: _Optional[float] = ..., latency: _Optional[_Union[LatencyPercentiles, _Mapping]] = ..., prediction_mean: _Optional[float] = ...) -> None: ...

class ShadowAgreement(_message.Message):
    __slots__ = ("pairs", "agreement_rate", "mean_abs_difference", "decision_threshold")
    PAIRS_FIELD_NUMBER: _ClassVar[int]
    AGREEMENT_RATE_FIELD_NUMBER: _ClassVar[int]
    MEAN_ABS_DIFFERENCE_FIELD_NUMBER: _ClassVar[int]
    DECISION_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    pairs: int
    agreement_rate: float
    mean_abs_difference: float
    decision_threshold: float
    def __init__(self, pairs: _Optional[int] = ..., agreement_rate: _Optional[float] = ..., mean_abs_difference: _Optional[float] = ..., decision_threshold: _Optional[float] = ...) -> None: ...

class GetCanaryAnalysisResponse(_message.Message):
    __slots__ = ("model_name", "window", "tracks", "champion_version", "challenger_version", "prediction_psi", "shadow", "min_records")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    TRACKS_FIELD_NUMBER: _ClassVar[int]
    CHAMPION_VERSION_FIELD_NUMBER: _ClassVar[int]
    CHALLENGER_VERSION_FIELD_NUMBER: _ClassVar[int]
    PREDICTION_PSI_FIELD_NUMBER: _ClassVar[int]
    SHADOW_FIELD_NUMBER: _ClassVar[int]
    MIN_RECORDS_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    window: TimeWindow
    tracks: _containers.RepeatedCompositeFieldContainer[TrackAnalysis]
    champion_version: int
    challenger_version: int
    prediction_psi: float
    shadow: ShadowAgreement
    min_records: int
    def __init__(self, model_name: _Optional[str] = ..., window: _Optional[_Union[TimeWindow, _Mapping]] = ..., tracks: _Optional[_Iterable[_Union[TrackAnalysis, _Mapping]]] = ..., champion_version: _Optional[int] = ..., challenger_version: _Optional[int] = ..., prediction_psi: _Optional[float] = ..., shadow: _Optional[_Union[ShadowAgreement, _Mapping]] = ..., min_records: _Optional[int] = ...) -> None: ...

class DriftWindowResult(_message.Message):
    __slots__ = ("model_name", "model_version", "track", "sequence", "window", "scores", "drifted_share", "drifted_share_threshold", "dataset_drift", "skipped_reason", "histograms")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    TRACK_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    DRIFTED_SHARE_FIELD_NUMBER: _ClassVar[int]
    DRIFTED_SHARE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    DATASET_DRIFT_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_REASON_FIELD_NUMBER: _ClassVar[int]
    HISTOGRAMS_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    model_version: int
    track: _predictions_pb2.Track
    sequence: int
    window: _drift_pb2.DriftWindow
    scores: _containers.RepeatedCompositeFieldContainer[FeatureScore]
    drifted_share: float
    drifted_share_threshold: float
    dataset_drift: bool
    skipped_reason: str
    histograms: _containers.RepeatedCompositeFieldContainer[FeatureHistogram]
    def __init__(self, model_name: _Optional[str] = ..., model_version: _Optional[int] = ..., track: _Optional[_Union[_predictions_pb2.Track, str]] = ..., sequence: _Optional[int] = ..., window: _Optional[_Union[_drift_pb2.DriftWindow, _Mapping]] = ..., scores: _Optional[_Iterable[_Union[FeatureScore, _Mapping]]] = ..., drifted_share: _Optional[float] = ..., drifted_share_threshold: _Optional[float] = ..., dataset_drift: _Optional[bool] = ..., skipped_reason: _Optional[str] = ..., histograms: _Optional[_Iterable[_Union[FeatureHistogram, _Mapping]]] = ...) -> None: ...

class FeatureHistogram(_message.Message):
    __slots__ = ("feature", "edges", "categories", "reference", "current", "missing")
    FEATURE_FIELD_NUMBER: _ClassVar[int]
    EDGES_FIELD_NUMBER: _ClassVar[int]
    CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    CURRENT_FIELD_NUMBER: _ClassVar[int]
    MISSING_FIELD_NUMBER: _ClassVar[int]
    feature: str
    edges: _containers.RepeatedScalarFieldContainer[float]
    categories: _containers.RepeatedScalarFieldContainer[str]
    reference: _containers.RepeatedScalarFieldContainer[float]
    current: _containers.RepeatedScalarFieldContainer[float]
    missing: int
    def __init__(self, feature: _Optional[str] = ..., edges: _Optional[_Iterable[float]] = ..., categories: _Optional[_Iterable[str]] = ..., reference: _Optional[_Iterable[float]] = ..., current: _Optional[_Iterable[float]] = ..., missing: _Optional[int] = ...) -> None: ...

class FeatureScore(_message.Message):
    __slots__ = ("drift", "deciding", "kind")
    DRIFT_FIELD_NUMBER: _ClassVar[int]
    DECIDING_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    drift: _drift_pb2.FeatureDrift
    deciding: bool
    kind: str
    def __init__(self, drift: _Optional[_Union[_drift_pb2.FeatureDrift, _Mapping]] = ..., deciding: _Optional[bool] = ..., kind: _Optional[str] = ...) -> None: ...

class GetDriftStatusRequest(_message.Message):
    __slots__ = ("model_name",)
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    def __init__(self, model_name: _Optional[str] = ...) -> None: ...

class DriftStatus(_message.Message):
    __slots__ = ("model_version", "track", "state", "latest", "open_window_count", "last_event_at", "windows_closed")
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    TRACK_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    LATEST_FIELD_NUMBER: _ClassVar[int]
    OPEN_WINDOW_COUNT_FIELD_NUMBER: _ClassVar[int]
    LAST_EVENT_AT_FIELD_NUMBER: _ClassVar[int]
    WINDOWS_CLOSED_FIELD_NUMBER: _ClassVar[int]
    model_version: int
    track: _predictions_pb2.Track
    state: AlertState
    latest: DriftWindowResult
    open_window_count: int
    last_event_at: _timestamp_pb2.Timestamp
    windows_closed: int
    def __init__(self, model_version: _Optional[int] = ..., track: _Optional[_Union[_predictions_pb2.Track, str]] = ..., state: _Optional[_Union[AlertState, str]] = ..., latest: _Optional[_Union[DriftWindowResult, _Mapping]] = ..., open_window_count: _Optional[int] = ..., last_event_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., windows_closed: _Optional[int] = ...) -> None: ...

class GetDriftStatusResponse(_message.Message):
    __slots__ = ("model_name", "statuses")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    statuses: _containers.RepeatedCompositeFieldContainer[DriftStatus]
    def __init__(self, model_name: _Optional[str] = ..., statuses: _Optional[_Iterable[_Union[DriftStatus, _Mapping]]] = ...) -> None: ...

class ListDriftWindowsRequest(_message.Message):
    __slots__ = ("model_name", "model_version", "track", "page_size")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    TRACK_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    model_version: int
    track: _predictions_pb2.Track
    page_size: int
    def __init__(self, model_name: _Optional[str] = ..., model_version: _Optional[int] = ..., track: _Optional[_Union[_predictions_pb2.Track, str]] = ..., page_size: _Optional[int] = ...) -> None: ...

class ListDriftWindowsResponse(_message.Message):
    __slots__ = ("windows",)
    WINDOWS_FIELD_NUMBER: _ClassVar[int]
    windows: _containers.RepeatedCompositeFieldContainer[DriftWindowResult]
    def __init__(self, windows: _Optional[_Iterable[_Union[DriftWindowResult, _Mapping]]] = ...) -> None: ...

class GetSkewReportRequest(_message.Message):
    __slots__ = ("model_name", "model_version")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    model_version: int
    def __init__(self, model_name: _Optional[str] = ..., model_version: _Optional[int] = ...) -> None: ...

class FeatureSkew(_message.Message):
    __slots__ = ("feature", "kind", "compared", "mismatches", "mismatch_rate", "distance_method", "distance", "offline_missing")
    FEATURE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    COMPARED_FIELD_NUMBER: _ClassVar[int]
    MISMATCHES_FIELD_NUMBER: _ClassVar[int]
    MISMATCH_RATE_FIELD_NUMBER: _ClassVar[int]
    DISTANCE_METHOD_FIELD_NUMBER: _ClassVar[int]
    DISTANCE_FIELD_NUMBER: _ClassVar[int]
    OFFLINE_MISSING_FIELD_NUMBER: _ClassVar[int]
    feature: str
    kind: str
    compared: int
    mismatches: int
    mismatch_rate: float
    distance_method: str
    distance: float
    offline_missing: int
    def __init__(self, feature: _Optional[str] = ..., kind: _Optional[str] = ..., compared: _Optional[int] = ..., mismatches: _Optional[int] = ..., mismatch_rate: _Optional[float] = ..., distance_method: _Optional[str] = ..., distance: _Optional[float] = ..., offline_missing: _Optional[int] = ...) -> None: ...

class VersionSkew(_message.Message):
    __slots__ = ("model_version", "samples", "features", "updated_at")
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    model_version: int
    samples: int
    features: _containers.RepeatedCompositeFieldContainer[FeatureSkew]
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, model_version: _Optional[int] = ..., samples: _Optional[int] = ..., features: _Optional[_Iterable[_Union[FeatureSkew, _Mapping]]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetSkewReportResponse(_message.Message):
    __slots__ = ("model_name", "versions", "enabled")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    versions: _containers.RepeatedCompositeFieldContainer[VersionSkew]
    enabled: bool
    def __init__(self, model_name: _Optional[str] = ..., versions: _Optional[_Iterable[_Union[VersionSkew, _Mapping]]] = ..., enabled: _Optional[bool] = ...) -> None: ...

class GenerateReportRequest(_message.Message):
    __slots__ = ("model_name", "model_version", "history")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    model_version: int
    history: int
    def __init__(self, model_name: _Optional[str] = ..., model_version: _Optional[int] = ..., history: _Optional[int] = ...) -> None: ...

class GenerateReportResponse(_message.Message):
    __slots__ = ("html", "saved_to", "images", "generated_at")
    HTML_FIELD_NUMBER: _ClassVar[int]
    SAVED_TO_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    GENERATED_AT_FIELD_NUMBER: _ClassVar[int]
    html: str
    saved_to: str
    images: _containers.RepeatedScalarFieldContainer[str]
    generated_at: _timestamp_pb2.Timestamp
    def __init__(self, html: _Optional[str] = ..., saved_to: _Optional[str] = ..., images: _Optional[_Iterable[str]] = ..., generated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
