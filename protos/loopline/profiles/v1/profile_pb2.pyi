import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FeatureKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FEATURE_KIND_UNSPECIFIED: _ClassVar[FeatureKind]
    FEATURE_KIND_NUMERIC: _ClassVar[FeatureKind]
    FEATURE_KIND_CATEGORICAL: _ClassVar[FeatureKind]
FEATURE_KIND_UNSPECIFIED: FeatureKind
FEATURE_KIND_NUMERIC: FeatureKind
FEATURE_KIND_CATEGORICAL: FeatureKind

class NumericProfile(_message.Message):
    __slots__ = ("bin_edges", "bin_fractions", "min", "max", "mean", "std", "sample", "sample_limit")
    BIN_EDGES_FIELD_NUMBER: _ClassVar[int]
    BIN_FRACTIONS_FIELD_NUMBER: _ClassVar[int]
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    MEAN_FIELD_NUMBER: _ClassVar[int]
    STD_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_LIMIT_FIELD_NUMBER: _ClassVar[int]
    bin_edges: _containers.RepeatedScalarFieldContainer[float]
    bin_fractions: _containers.RepeatedScalarFieldContainer[float]
    min: float
    max: float
    mean: float
    std: float
    sample: _containers.RepeatedScalarFieldContainer[float]
    sample_limit: int
    def __init__(self, bin_edges: _Optional[_Iterable[float]] = ..., bin_fractions: _Optional[_Iterable[float]] = ..., min: _Optional[float] = ..., max: _Optional[float] = ..., mean: _Optional[float] = ..., std: _Optional[float] = ..., sample: _Optional[_Iterable[float]] = ..., sample_limit: _Optional[int] = ...) -> None: ...

class CategoricalProfile(_message.Message):
    __slots__ = ("frequencies", "other_fraction", "input_vocabulary")
    class FrequenciesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    FREQUENCIES_FIELD_NUMBER: _ClassVar[int]
    OTHER_FRACTION_FIELD_NUMBER: _ClassVar[int]
    INPUT_VOCABULARY_FIELD_NUMBER: _ClassVar[int]
    frequencies: _containers.ScalarMap[str, float]
    other_fraction: float
    input_vocabulary: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, frequencies: _Optional[_Mapping[str, float]] = ..., other_fraction: _Optional[float] = ..., input_vocabulary: _Optional[_Iterable[str]] = ...) -> None: ...

class FeatureProfile(_message.Message):
    __slots__ = ("name", "kind", "count", "missing", "numeric", "categorical")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    MISSING_FIELD_NUMBER: _ClassVar[int]
    NUMERIC_FIELD_NUMBER: _ClassVar[int]
    CATEGORICAL_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: FeatureKind
    count: int
    missing: int
    numeric: NumericProfile
    categorical: CategoricalProfile
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[_Union[FeatureKind, str]] = ..., count: _Optional[int] = ..., missing: _Optional[int] = ..., numeric: _Optional[_Union[NumericProfile, _Mapping]] = ..., categorical: _Optional[_Union[CategoricalProfile, _Mapping]] = ...) -> None: ...

class ReferenceProfile(_message.Message):
    __slots__ = ("model_name", "model_version", "training_set_hash", "row_count", "features", "prediction", "created_at")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    TRAINING_SET_HASH_FIELD_NUMBER: _ClassVar[int]
    ROW_COUNT_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    PREDICTION_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    model_version: int
    training_set_hash: str
    row_count: int
    features: _containers.RepeatedCompositeFieldContainer[FeatureProfile]
    prediction: FeatureProfile
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, model_name: _Optional[str] = ..., model_version: _Optional[int] = ..., training_set_hash: _Optional[str] = ..., row_count: _Optional[int] = ..., features: _Optional[_Iterable[_Union[FeatureProfile, _Mapping]]] = ..., prediction: _Optional[_Union[FeatureProfile, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
