"""The ONNX Runtime backend: one loaded model version, its OIP signature, warm-up and scoring."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort  # type: ignore[import-untyped]

from loopline_common.errors import FailedPrecondition, InvalidArgument
from loopline_inference.tensors import DTYPES, ORT_TYPES, Tensor

log = logging.getLogger(__name__)

# Model metadata keys (ONNX metadata_props) written by Loopline's training jobs.
FEATURE_NAMES_KEY = "loopline.feature_names"
ENTITY_KEYS_KEY = "loopline.entity_keys"
SCORE_OUTPUT_KEY = "loopline.score_output"
# The input encoding training used (training's `FeatureEncoding.to_json`): each categorical feature's
# vocabulary, whose value's index is the model's input, and the code of a value not in it or missing.
PREPROCESSING_KEY = "loopline.preprocessing"


@dataclass(frozen=True, slots=True)
class Categorical:
    """A categorical input: label -> code, and the code of an unknown or missing label."""

    codes: dict[str, float]
    unknown: float

    def code(self, label: str) -> float:
        return self.codes.get(label, self.unknown)


@dataclass(frozen=True, slots=True)
class TensorSpec:
    name: str
    datatype: str
    # -1 for a dimension of any size (a symbolic or unknown ONNX dimension).
    shape: tuple[int, ...]

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


@dataclass
class OnnxModel:
    """One model version in an ONNX Runtime session. Immutable once loaded; swapped whole."""

    name: str
    version: int
    source: str
    sha256: str
    session: ort.InferenceSession
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    feature_names: tuple[str, ...]
    entity_keys: tuple[str, ...]
    score_output: str | None
    load_seconds: float = 0.0
    metadata: dict[str, str] = field(default_factory=dict)
    # (output index, column) of the prediction score, or None when no output looks like one.
    score: tuple[int, int] | None = None
    # Categorical features by name (from the preprocessing metadata); every other feature is a number.
    categorical: dict[str, Categorical] = field(default_factory=dict)
    # The version as OIP's string (set once loaded).
    version_label: str = field(init=False, default="")

    @cached_property
    def feature_kinds(self) -> tuple[Categorical | None, ...]:
        """Per feature, in input order: its categorical encoding, or None for a number (fixed once loaded)."""
        return tuple(self.categorical.get(name) for name in self.feature_names)

    @cached_property
    def input_signature(self) -> str:
        """A digest of what an input built for this model depends on (features, their encodings, input
        types): two models with equal signatures take the same enriched input. Compared per shadowed request,
        so computed once."""
        kinds = [None if k is None else (sorted(k.codes.items()), k.unknown) for k in self.feature_kinds]
        text = repr((self.feature_names, kinds, [i.datatype for i in self.inputs]))
        return hashlib.sha256(text.encode()).hexdigest()

    def input_spec(self, name: str) -> TensorSpec | None:
        for spec in self.inputs:
            if spec.name == name:
                return spec
        return None

    def validate(self, tensors: list[Tensor]) -> dict[str, np.ndarray[Any, Any]]:
        """The ONNX feed for `tensors`, or InvalidArgument naming what does not match the signature."""
        if len(tensors) != len(self.inputs):
            expected = ", ".join(s.name for s in self.inputs)
            got = ", ".join(t.name for t in tensors) or "none"
            raise InvalidArgument(
                f"model '{self.name}' expects {len(self.inputs)} input(s) ({expected}), got {len(tensors)} ({got})"
            )
        feed: dict[str, np.ndarray[Any, Any]] = {}
        for tensor in tensors:
            spec = self.input_spec(tensor.name)
            if spec is None:
                raise InvalidArgument(
                    f"model '{self.name}' has no input '{tensor.name}' (inputs: "
                    f"{', '.join(s.name for s in self.inputs)})"
                )
            if tensor.datatype != spec.datatype:
                raise InvalidArgument(
                    f"input '{tensor.name}': datatype {tensor.datatype} does not match the model's {spec.datatype}",
                    details={"input": tensor.name, "expected": spec.datatype},
                )
            shape = tensor.array.shape
            fits = len(shape) == len(spec.shape)
            if fits:
                for i, want in self._fixed_dims[tensor.name]:
                    if shape[i] != want:
                        fits = False
                        break
            if not fits:
                raise InvalidArgument(
                    f"input '{tensor.name}': shape {list(shape)} does not match the model's {list(spec.shape)}"
                    " (-1: any size)",
                    details={"input": tensor.name, "expected": str(list(spec.shape))},
                )
            array = tensor.array
            if spec.datatype == "BYTES":
                array = np.array([v.decode("utf-8", "replace") for v in array.reshape(-1)], dtype=object).reshape(
                    shape
                )
            feed[tensor.name] = array
        return feed

    def __post_init__(self) -> None:
        # Per-request work done once: the version as OIP's string, the fixed dimensions of each input, every
        # output's name, and ORT's binding itself (InferenceSession.run re-validates the feed names the
        # signature check already did).
        self.version_label = str(self.version)
        self._fixed_dims = {s.name: tuple((i, d) for i, d in enumerate(s.shape) if d != -1) for s in self.inputs}
        self._output_names = [s.name for s in self.outputs]
        binding = getattr(self.session, "_sess", None)
        self._run = binding.run if binding is not None and hasattr(binding, "run") else None

    def run(self, feed: dict[str, np.ndarray[Any, Any]], output_names: list[str] | None = None) -> list[Tensor]:
        """Score `feed`; the outputs named (all by default), in the model's output order."""
        if output_names is None:
            specs: tuple[TensorSpec, ...] | list[TensorSpec] = self.outputs
            names = self._output_names
        else:
            specs = [self.output_spec(n) for n in output_names]
            names = [s.name for s in specs]
        values = self._run(names, feed, None) if self._run is not None else self.session.run(names, feed)
        # ORT's arrays as they are, but text (every output is a tensor: `_spec` refuses anything else).
        return [
            Tensor(spec.name, spec.datatype, _as_array(value, spec.datatype) if spec.datatype == "BYTES" else value)
            for spec, value in zip(specs, values, strict=True)
        ]

    def output_spec(self, name: str) -> TensorSpec:
        for spec in self.outputs:
            if spec.name == name:
                return spec
        raise InvalidArgument(
            f"model '{self.name}' has no output '{name}' (outputs: {', '.join(s.name for s in self.outputs)})",
            details={"output": name},
        )

    def warm_up(self, rows: int = 1, rounds: int = 3) -> None:
        """Score synthetic input a few times so the first real request pays no first-run costs."""
        feed = {spec.name: _synthetic(spec, rows) for spec in self.inputs}
        for _ in range(rounds):
            self.session.run(None, feed)

    def metadata_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "versions": [self.version_label],
            "platform": "onnxruntime_onnx",
            "inputs": [s.as_json() for s in self.inputs],
            "outputs": [s.as_json() for s in self.outputs],
        }


def _as_array(value: Any, datatype: str) -> np.ndarray[Any, Any]:
    if isinstance(value, np.ndarray):
        if datatype == "BYTES" and value.dtype == object:
            return np.array([v.encode() if isinstance(v, str) else v for v in value.reshape(-1)], dtype=object).reshape(
                value.shape
            )
        return value
    # Non-tensor outputs (sequences/maps, e.g. a classifier's ZipMap) cannot travel as OIP tensors.
    raise FailedPrecondition(
        "the model returned a non-tensor output; export it without ZipMap (skl2onnx: zipmap=False)"
    )


def _synthetic(spec: TensorSpec, rows: int) -> np.ndarray[Any, Any]:
    shape = [rows if i == 0 and d == -1 else (1 if d == -1 else d) for i, d in enumerate(spec.shape)]
    if spec.datatype == "BYTES":
        return np.full(shape, "", dtype=object)
    return np.zeros(shape, dtype=DTYPES[spec.datatype])


def _spec(arg: Any) -> TensorSpec:
    datatype = ORT_TYPES.get(arg.type)
    if datatype is None:
        raise FailedPrecondition(f"model tensor '{arg.name}' has type {arg.type}, which OIP v2 cannot carry")
    shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in (arg.shape or []))
    return TensorSpec(arg.name, datatype, shape)


def session_options(threads: int) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Spinning threads burn the CPU the request path needs when the pod has one or two cores.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def load_model(
    *, name: str, version: int, source: str, data: bytes, threads: int, warm_up: bool = True
) -> OnnxModel:
    """Build an `OnnxModel` from ONNX bytes: session, signature from the graph, optional warm-up."""
    started = time.perf_counter()
    try:
        session = ort.InferenceSession(data, sess_options=session_options(threads), providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own exception types for a bad file
        raise FailedPrecondition(f"cannot load the ONNX model from {source}: {exc}") from None
    meta = session.get_modelmeta().custom_metadata_map or {}
    model = OnnxModel(
        name=name,
        version=version,
        source=source,
        sha256=hashlib.sha256(data).hexdigest(),
        session=session,
        inputs=tuple(_spec(a) for a in session.get_inputs()),
        outputs=tuple(_spec(a) for a in session.get_outputs()),
        feature_names=tuple(_json_list(meta.get(FEATURE_NAMES_KEY))),
        entity_keys=tuple(_json_list(meta.get(ENTITY_KEYS_KEY))),
        score_output=meta.get(SCORE_OUTPUT_KEY),
        metadata=dict(meta),
        categorical=_categorical(meta.get(PREPROCESSING_KEY)),
    )
    model.score = _score_column(model)
    if warm_up:
        model.warm_up()
    model.load_seconds = time.perf_counter() - started
    log.info(
        "model loaded",
        extra={"model": name, "version": version, "source": source, "sha256": model.sha256,
               "load_seconds": round(model.load_seconds, 4), "event": "model_loaded"},
    )
    return model


def _score_column(model: OnnxModel) -> tuple[int, int] | None:
    """Which output value is "the score": the output named by metadata, else a probability output's
    positive class, else the first single-valued float output."""
    floats = [(i, s) for i, s in enumerate(model.outputs) if s.datatype in ("FP32", "FP64", "FP16")]
    for i, spec in floats:
        if spec.name == model.score_output:
            return i, (1 if len(spec.shape) == 2 and spec.shape[1] == 2 else 0)
    for i, spec in floats:
        if "prob" in spec.name.lower() and len(spec.shape) == 2 and spec.shape[1] in (2, -1):
            return i, 1
    for i, spec in floats:
        if len(spec.shape) == 1 or (len(spec.shape) == 2 and spec.shape[1] == 1):
            return i, 0
    return None


def _categorical(text: str | None) -> dict[str, Categorical]:
    """The categorical features of a preprocessing description; {} when there is none or it is unreadable
    (the model is then fed numbers only, as before)."""
    if not text:
        return {}
    try:
        spec = json.loads(text)
        out = {}
        for feature in spec.get("features", []):
            if feature.get("kind") == "categorical":
                vocabulary = [str(v) for v in feature.get("vocabulary", [])]
                out[str(feature["name"])] = Categorical(
                    codes={label: float(i) for i, label in enumerate(vocabulary)},
                    unknown=float(feature.get("unknown", -1.0)),
                )
        return out
    except (ValueError, TypeError, KeyError, AttributeError):
        log.warning("unreadable %s metadata: categorical features will be fed as missing", PREPROCESSING_KEY)
        return {}


def _json_list(text: str | None) -> list[str]:
    if not text:
        return []
    try:
        value = json.loads(text)
    except ValueError:
        return [part.strip() for part in text.split(",") if part.strip()]
    return [str(v) for v in value] if isinstance(value, list) else []


def read_local(path: str, model_file: str = "model.onnx") -> tuple[bytes, str]:
    """The ONNX bytes at `path` (a file, or a folder holding `model_file` or exactly one *.onnx) and the
    file's path, following KServe's storage-initializer layout under /mnt/models."""
    p = Path(path)
    if p.is_dir():
        candidate = p / model_file
        if not candidate.is_file():
            found = sorted(p.rglob("*.onnx"))
            if len(found) != 1:
                raise FailedPrecondition(
                    f"{p} holds {len(found)} .onnx files and no {model_file}; name the file in the model reference"
                )
            candidate = found[0]
        p = candidate
    if not p.is_file():
        raise FailedPrecondition(f"no model file at {p}")
    return p.read_bytes(), str(p)
