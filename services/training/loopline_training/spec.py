"""Job specs: validation, defaults and the hyperparameters each model family accepts.

`normalize_spec` checks a `JobSpec` and returns a copy with every default filled in (hyperparameters
included), so the stored spec is exactly what ran; a spec with problems raises one `InvalidArgument`
naming every problem (message) and each field (details). Nothing here imports a training library.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from loopline.training.v1 import training_pb2 as pb
from loopline_common.errors import InvalidArgument

LIGHTGBM = "lightgbm"
TORCH_MLP = "torch_mlp"
FAMILIES = (LIGHTGBM, TORCH_MLP)
TRIGGERS = ("manual", "drift", "schedule")
DEFAULT_TIMESTAMP_COLUMN = "event_timestamp"
DEFAULT_HOLDOUT_FRACTION = 0.2
DEFAULT_EARLY_STOPPING_FRACTION = 0.15
DEFAULT_THRESHOLD = 0.5
MAX_SEED = 2**32 - 1

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
COLUMN = re.compile(r"^[^\x00-\x1f]{1,256}$")
MAX_REASON = 2000


@dataclass(frozen=True)
class Param:
    """One hyperparameter: its type, default and allowed range, as text in and out of specs."""

    kind: type
    default: str
    check: Callable[[float], bool]
    rule: str

    def parse(self, text: str) -> int | float | str:
        if self.kind is int:
            value: int | float | str = int(text)
        elif self.kind is float:
            value = float(text)
            if not math.isfinite(value):
                raise ValueError("not a finite number")
        else:
            value = text
        if not isinstance(value, str) and not self.check(value):
            raise ValueError(self.rule)
        return value


def _int(default: int, low: int, high: int) -> Param:
    return Param(int, str(default), lambda v: low <= v <= high, f"an integer in [{low}, {high}]")


def _float(default: float, low: float, high: float, *, open_low: bool = False) -> Param:
    def check(v: float) -> bool:
        return (low < v if open_low else low <= v) and v <= high

    bracket = "(" if open_low else "["
    return Param(float, repr(default), check, f"a number in {bracket}{low}, {high}]")


def _layers(text: str) -> bool:
    return bool(re.fullmatch(r"\d{1,4}(,\d{1,4}){0,7}", text)) and all(0 < int(v) <= 4096 for v in text.split(","))


HYPERPARAMETERS: dict[str, dict[str, Param]] = {
    LIGHTGBM: {
        "num_boost_round": _int(300, 1, 100_000),
        "learning_rate": _float(0.05, 0.0, 1.0, open_low=True),
        "num_leaves": _int(31, 2, 4096),
        "max_depth": _int(-1, -1, 64),
        "min_child_samples": _int(20, 1, 1_000_000),
        "feature_fraction": _float(1.0, 0.0, 1.0, open_low=True),
        "bagging_fraction": _float(1.0, 0.0, 1.0, open_low=True),
        "bagging_freq": _int(0, 0, 1000),
        "lambda_l1": _float(0.0, 0.0, 1e6),
        "lambda_l2": _float(0.0, 0.0, 1e6),
        "max_bin": _int(255, 2, 1024),
        "scale_pos_weight": _float(1.0, 0.0, 1e6, open_low=True),
        # 0 turns early stopping off.
        "early_stopping_rounds": _int(30, 0, 100_000),
        "num_threads": _int(1, 1, 64),
    },
    TORCH_MLP: {
        "hidden_layers": Param(str, "64,32", lambda _: True, "comma-separated layer widths, e.g. 64,32"),
        "dropout": _float(0.1, 0.0, 0.9),
        "learning_rate": _float(0.001, 0.0, 1.0, open_low=True),
        "weight_decay": _float(0.0, 0.0, 1.0),
        "batch_size": _int(256, 1, 65_536),
        "max_epochs": _int(50, 1, 1_000_000),
        # Epochs without improvement of the early-stopping loss before training stops; 0 turns it off.
        "patience": _int(5, 0, 1_000_000),
        "embedding_dim": _int(4, 1, 64),
        "pos_weight": _float(1.0, 0.0, 1e6, open_low=True),
        "num_threads": _int(1, 1, 64),
    },
}


def parse_hyperparameters(family: str, values: dict[str, str]) -> dict[str, int | float | str]:
    """Typed hyperparameters of a normalized spec (every name known, every value valid)."""
    table = HYPERPARAMETERS[family]
    return {name: table[name].parse(text) for name, text in values.items()}


def _check_uri(value: str, field: str, problems: dict[str, str], *, must_exist: bool) -> None:
    parsed = urlparse(value)
    if parsed.scheme not in ("", "file"):
        problems[field] = f"{field} must be a local path or a file:// URI, not {parsed.scheme}://"
        return
    path = Path(parsed.path if parsed.scheme == "file" else value)
    if must_exist and not path.is_file():
        problems[field] = f"{field} {value!r} is not a file"


def local_path(uri: str) -> Path:
    """The file a path or file:// URI names."""
    parsed = urlparse(uri)
    return Path(parsed.path) if parsed.scheme == "file" else Path(uri)


def normalize_spec(
    spec: pb.JobSpec, *, default_threads: int = 1, check_files: bool = False, features_available: bool = True
) -> pb.JobSpec:
    """A validated copy of `spec` with every default filled in; InvalidArgument naming each problem."""
    out = pb.JobSpec()
    out.CopyFrom(spec)
    problems: dict[str, str] = {}

    if not out.model_name:
        problems["spec.model_name"] = "model_name is required"
    elif not NAME.match(out.model_name):
        problems["spec.model_name"] = "model_name must be 1-128 letters, digits, '.', '_' or '-'"

    if not out.family:
        problems["spec.family"] = f"family is required: one of {', '.join(FAMILIES)}"
    elif out.family not in FAMILIES:
        problems["spec.family"] = f"unknown family {out.family[:60]!r}: use one of {', '.join(FAMILIES)}"

    if not out.feature_service:
        problems["spec.feature_service"] = "feature_service is required"
    elif not NAME.match(out.feature_service):
        problems["spec.feature_service"] = "feature_service must be 1-128 letters, digits, '.', '_' or '-'"

    if not out.label:
        problems["spec.label"] = "label is required: the name of the 0/1 label column"
    elif not COLUMN.match(out.label):
        problems["spec.label"] = "label is not a valid column name"

    if bool(out.entity_uri) == bool(out.dataset_uri):
        problems["spec.entity_uri"] = (
            "give exactly one of entity_uri (labelled rows, features joined by the features service) "
            "and dataset_uri (features already joined)"
        )
    elif out.entity_uri:
        if not features_available:
            problems["spec.entity_uri"] = "entity_uri needs the features service, and none is configured"
        else:
            _check_uri(out.entity_uri, "spec.entity_uri", problems, must_exist=check_files)
        if out.exclude_columns:
            problems["spec.exclude_columns"] = "exclude_columns applies to dataset_uri only"
    else:
        _check_uri(out.dataset_uri, "spec.dataset_uri", problems, must_exist=check_files)

    if not out.timestamp_column:
        out.timestamp_column = DEFAULT_TIMESTAMP_COLUMN
    elif not COLUMN.match(out.timestamp_column):
        problems["spec.timestamp_column"] = "timestamp_column is not a valid column name"
    for column in out.exclude_columns:
        if not COLUMN.match(column):
            problems["spec.exclude_columns"] = f"{column[:60]!r} is not a valid column name"
    if out.label and out.label == out.timestamp_column:
        problems["spec.label"] = "label and timestamp_column must differ"

    _check_window(out, problems)
    _check_validation(out, problems)

    family_params = HYPERPARAMETERS.get(out.family)
    if family_params is not None:
        for name, text in sorted(out.hyperparameters.items()):
            param = family_params.get(name)
            if param is None:
                problems[f"spec.hyperparameters.{name[:60]}"] = (
                    f"unknown hyperparameter {name[:60]!r} for {out.family}; known: {', '.join(sorted(family_params))}"
                )
                continue
            try:
                param.parse(text)
                if param.kind is str and not _layers(text):
                    raise ValueError(param.rule)
            except ValueError:
                problems[f"spec.hyperparameters.{name}"] = f"hyperparameter {name} = {text[:60]!r} must be {param.rule}"
        for name, param in family_params.items():
            if name not in out.hyperparameters:
                out.hyperparameters[name] = str(default_threads) if name == "num_threads" else param.default

    if not 0 <= out.seed <= MAX_SEED:
        problems["spec.seed"] = f"seed must be in [0, {MAX_SEED}]"
    if not out.trigger:
        out.trigger = "manual"
    elif out.trigger not in TRIGGERS:
        problems["spec.trigger"] = f"unknown trigger {out.trigger[:60]!r}: use one of {', '.join(TRIGGERS)}"
    if len(out.reason) > MAX_REASON:
        problems["spec.reason"] = f"reason must be at most {MAX_REASON} characters"
    if not out.HasField("threshold"):
        out.threshold = DEFAULT_THRESHOLD
    elif not 0.0 < out.threshold < 1.0:
        problems["spec.threshold"] = "threshold must be in (0, 1)"
    if out.parent_version < 0:
        problems["spec.parent_version"] = "parent_version must not be negative"

    if problems:
        summary = "; ".join(problems.values())
        raise InvalidArgument(f"invalid job spec: {summary}", details=problems)
    return out


def _check_window(spec: pb.JobSpec, problems: dict[str, str]) -> None:
    if not spec.HasField("window") or not spec.window.HasField("start") or not spec.window.HasField("end"):
        problems["spec.window"] = "window is required, with start and end"
        return
    start, end = spec.window.start.ToDatetime(), spec.window.end.ToDatetime()
    if start >= end:
        problems["spec.window"] = (
            f"window is empty: start {spec.window.start.ToJsonString()} is not before "
            f"end {spec.window.end.ToJsonString()}"
        )


def _check_validation(spec: pb.JobSpec, problems: dict[str, str]) -> None:
    holdout = spec.validation.time_holdout
    if not spec.validation.HasField("time_holdout"):
        spec.validation.time_holdout.holdout_fraction = DEFAULT_HOLDOUT_FRACTION
    boundary = holdout.WhichOneof("boundary")
    if boundary is None:
        holdout.holdout_fraction = DEFAULT_HOLDOUT_FRACTION
    elif boundary == "holdout_fraction":
        if not 0.0 < holdout.holdout_fraction <= 0.5:
            problems["spec.validation.time_holdout.holdout_fraction"] = "holdout_fraction must be in (0, 0.5]"
    elif spec.HasField("window"):
        start, end = spec.window.start.ToDatetime(), spec.window.end.ToDatetime()
        if not start < holdout.holdout_start.ToDatetime() < end:
            problems["spec.validation.time_holdout.holdout_start"] = "holdout_start must fall inside the window"
    if holdout.early_stopping_fraction == 0.0:
        holdout.early_stopping_fraction = DEFAULT_EARLY_STOPPING_FRACTION
    elif not 0.0 < holdout.early_stopping_fraction <= 0.5:
        problems["spec.validation.time_holdout.early_stopping_fraction"] = "early_stopping_fraction must be in (0, 0.5]"
