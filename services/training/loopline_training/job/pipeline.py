"""One training job from start to end: training set → train → evaluate → MLflow run → ONNX export and
parity gate → reference profile → logged model → registration. Returns the job's Outcome.

`fit` is the pure part (split, encode, train, predict, evaluate) and is what "same spec and same data
give the same metrics" rests on: seeds and thread counts are set explicitly, inputs are ordered by time.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml  # type: ignore[import-untyped]

from loopline.training.v1 import training_pb2 as pb
from loopline_common.errors import LooplineError
from loopline_training.clients import FeaturesClient, RegistryClient
from loopline_training.job import parity
from loopline_training.job.data import Split, TrainingSet, load_training_set, split
from loopline_training.job.encoding import FeatureEncoding
from loopline_training.job.errors import JobError, Terminated
from loopline_training.job.evaluation import Evaluation, evaluate
from loopline_training.job.profile import build_profile
from loopline_training.job.report import write_report
from loopline_training.job.reporter import ProgressReporter
from loopline_training.job.tracking import Tracker
from loopline_training.protocol import FAILED, SUCCEEDED, TERMINATED, Outcome
from loopline_training.spec import LIGHTGBM, parse_hyperparameters

log = logging.getLogger("loopline_training.job")

MODEL_FILE = "model.onnx"
PROFILE_FILE = "reference_profile.pb"
PREPROCESSING_FILE = "preprocessing.json"
# Hold-out metrics recorded with the registered version.
REGISTERED_METRICS = ("roc_auc", "pr_auc", "log_loss", "brier", "accuracy", "precision", "recall", "f1")

IterationReport = Callable[[int, int, dict[str, float]], None]


@dataclass
class Trained:
    data: TrainingSet
    split: Split
    encoding: FeatureEncoding
    model: Any  # lgbm.LightGbmModel | mlp.MlpModel
    x_holdout: np.ndarray
    y_holdout: np.ndarray
    native: np.ndarray  # P(class 1) on the hold-out
    evaluation: Evaluation
    history: dict[str, list[float]] = field(default_factory=dict)
    train_seconds: float = 0.0

    @property
    def best_iteration(self) -> int:
        return int(getattr(self.model, "best_iteration", 0) or getattr(self.model, "best_epoch", 0))


def fit(spec: pb.JobSpec, data: TrainingSet, *, report: IterationReport | None = None,
        on_trained: Callable[[], None] | None = None) -> Trained:
    """Split by time, encode, train the spec's family with its seed, and evaluate on the hold-out;
    `on_trained` is called when training is done, before the hold-out is scored."""
    parts = split(data, spec.validation.time_holdout)
    encoding = FeatureEncoding.fit(parts.train, data.features)
    x_train, x_valid, x_hold = (encoding.matrix(p) for p in (parts.train, parts.early_stopping, parts.holdout))
    y_train, y_valid, y_hold = (p[data.label].to_numpy(dtype=np.int64)
                                for p in (parts.train, parts.early_stopping, parts.holdout))
    params = parse_hyperparameters(spec.family, dict(spec.hyperparameters))
    history: dict[str, list[float]] = defaultdict(list)

    def on_iteration(done: int, total: int, metrics: dict[str, float]) -> None:
        for name, value in metrics.items():
            history[name].append(value)
        if report is not None:
            report(done, total, metrics)

    started = time.perf_counter()
    if spec.family == LIGHTGBM:
        from loopline_training.job import lgbm

        model: Any = lgbm.train(x_train=x_train, y_train=y_train, x_valid=x_valid, y_valid=y_valid, params=params,
                                categorical=encoding.categorical_indices, seed=int(spec.seed), report=on_iteration)
    else:
        from loopline_training.job import mlp

        categorical = [(i, len(encoding.vocabularies[encoding.features[i]])) for i in encoding.categorical_indices]
        model = mlp.train(x_train=x_train, y_train=y_train, x_valid=x_valid, y_valid=y_valid, params=params,
                          categorical=categorical, seed=int(spec.seed), report=on_iteration)
    train_seconds = time.perf_counter() - started
    if on_trained is not None:
        on_trained()
    native = model.predict(x_hold)
    evaluation = evaluate(y_hold, native, threshold=spec.threshold)
    return Trained(data=data, split=parts, encoding=encoding, model=model, x_holdout=x_hold, y_holdout=y_hold,
                   native=native, evaluation=evaluation, history=dict(history), train_seconds=train_seconds)


def _window(spec: pb.JobSpec) -> tuple[str, str]:
    return spec.window.start.ToJsonString(), spec.window.end.ToJsonString()


def run_params(spec: pb.JobSpec) -> dict[str, str]:
    start, end = _window(spec)
    holdout = spec.validation.time_holdout
    params = {
        "family": spec.family, "feature_service": spec.feature_service, "label": spec.label,
        "window_start": start, "window_end": end, "seed": str(spec.seed), "threshold": repr(spec.threshold),
        "early_stopping_fraction": repr(holdout.early_stopping_fraction),
        "data_source": spec.entity_uri or spec.dataset_uri,
    }
    if holdout.WhichOneof("boundary") == "holdout_start":
        params["holdout_start"] = holdout.holdout_start.ToJsonString()
    else:
        params["holdout_fraction"] = repr(holdout.holdout_fraction)
    params.update({f"hp_{k}": v for k, v in spec.hyperparameters.items()})
    return params


def model_metadata(ctx: JobContext, data: TrainingSet, trained: Trained) -> dict[str, str]:
    """ONNX metadata_props that serving reads: input feature order, entity keys and feature service (for
    enrichment), the score output, and how the input is encoded."""
    metadata = {
        "loopline.feature_names": json.dumps(trained.encoding.features),
        "loopline.score_output": "probabilities",
        "loopline.model_name": ctx.spec.model_name,
        "loopline.family": ctx.spec.family,
        "loopline.job_id": ctx.job_id,
        "loopline.training_set_hash": data.content_hash,
        "loopline.preprocessing": json.dumps(trained.encoding.to_json(), separators=(",", ":")),
    }
    if data.entity_keys:  # trained on a feature service's features: serving can fetch them the same way
        metadata["loopline.entity_keys"] = json.dumps(data.entity_keys)
        metadata["loopline.feature_service"] = ctx.spec.feature_service
    return metadata


def with_metadata(model_bytes: bytes, metadata: dict[str, str]) -> bytes:
    import onnx

    model = onnx.load_from_string(model_bytes)
    existing = {p.key: p for p in model.metadata_props}
    for key, value in metadata.items():
        if key in existing:
            existing[key].value = value
        else:
            model.metadata_props.add(key=key, value=value)
    return bytes(model.SerializeToString())


def _mlmodel(n_features: int) -> str:
    tensor_in = [{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, n_features]}, "name": "input"}]
    tensor_out = [
        {"type": "tensor", "tensor-spec": {"dtype": "int64", "shape": [-1]}, "name": "label"},
        {"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 2]}, "name": "probabilities"},
    ]
    import onnx

    document = {
        "artifact_path": "model",
        "flavors": {
            "onnx": {"onnx_version": onnx.__version__, "data": MODEL_FILE, "providers": ["CPUExecutionProvider"]},
        },
        "signature": {"inputs": json.dumps(tensor_in), "outputs": json.dumps(tensor_out)},
    }
    return str(yaml.safe_dump(document, sort_keys=False))


@dataclass
class JobContext:
    job_id: str
    spec: pb.JobSpec
    work_dir: Path
    reporter: ProgressReporter
    tracker: Tracker
    features: FeaturesClient | None
    registry: RegistryClient | None
    code_version: str
    # False: stop after the logged model (the benchmark); True: no registry is an error.
    register: bool = True
    experiment_prefix: str = "loopline/"
    features_timeout: float = 600.0


def run(ctx: JobContext) -> Outcome:
    """Run the job; every failure becomes an Outcome saying what went wrong (never an exception)."""
    spec, reporter, tracker = ctx.spec, ctx.reporter, ctx.tracker
    facts: dict[str, Any] = {}
    try:
        # The run is created in the background while the training set loads.
        tracker.start(
            experiment=f"{ctx.experiment_prefix}{spec.model_name}", run_name=f"{spec.model_name}-{ctx.job_id[:8]}",
            tags={
                "loopline.job_id": ctx.job_id, "loopline.model_name": spec.model_name, "loopline.family": spec.family,
                "loopline.feature_service": spec.feature_service, "loopline.code_version": ctx.code_version,
                "loopline.trigger": spec.trigger, "loopline.trigger_reason": spec.reason[:5000],
                "loopline.parent_version": str(spec.parent_version),
            },
        )
        reporter.stage("loading_data")
        data = load_training_set(spec=spec, job_id=ctx.job_id, work_dir=ctx.work_dir, features=ctx.features,
                                 timeout=ctx.features_timeout)
        facts.update(training_set_hash=data.content_hash, training_rows=data.rows)
        reporter.update(training_set_hash=data.content_hash, training_rows=data.rows)
        tracker.set_tags({"loopline.training_set_hash": data.content_hash})
        tracker.log_params({**run_params(spec), "training_rows": str(data.rows), "features": ",".join(data.features)})
        run_id = tracker.wait_started()
        facts["mlflow_run_id"] = run_id
        reporter.update(mlflow_run_id=run_id)

        reporter.stage("training")

        def on_iteration(done: int, total: int, metrics: dict[str, float]) -> None:
            for name, value in metrics.items():
                tracker.metric(name, value, done)
            reporter.iteration(done, total, metrics)

        trained = fit(spec, data, report=on_iteration, on_trained=tracker.flush)
        reporter.stage("evaluating")
        parts = trained.split
        tracker.log_params({
            "train_rows": str(len(parts.train)), "early_stopping_rows": str(len(parts.early_stopping)),
            "holdout_rows": str(len(parts.holdout)), "holdout_start_time": parts.holdout_start.isoformat(),
            "best_iteration": str(trained.best_iteration), "n_features": str(len(trained.encoding.features)),
        })
        metrics = {**trained.evaluation.metrics, **{f"confusion_{k}": float(v)
                                                     for k, v in trained.evaluation.confusion.items()},
                   "train_seconds": trained.train_seconds}
        tracker.log_metrics(metrics)
        reporter.update(metrics={k: trained.evaluation.metrics[k] for k in REGISTERED_METRICS})
        with tempfile.TemporaryDirectory(dir=_scratch(ctx.work_dir)) as folder:
            report_dir = Path(folder) / "evaluation"
            write_report(report_dir, evaluation=trained.evaluation, y=trained.y_holdout, p=trained.native,
                         title=f"{spec.model_name} ({spec.family}) — job {ctx.job_id}",
                         facts={"training_set_hash": data.content_hash, "rows": data.rows,
                                "holdout_rows": len(parts.holdout), "holdout_start": parts.holdout_start.isoformat(),
                                "best_iteration": trained.best_iteration},
                         history=trained.history)
            tracker.log_artifacts(report_dir, "evaluation")

            reporter.stage("exporting")
            n_features = len(trained.encoding.features)
            onnx_bytes = with_metadata(trained.model.to_onnx(n_features), model_metadata(ctx, data, trained))
            gate = parity.check(onnx_bytes, trained.x_holdout, trained.native)
            tracker.log_metrics({"onnx_parity_max_abs_diff": gate.max_abs_diff})
            tracker.set_tags({"loopline.onnx_parity": "passed" if gate.passed else "failed"})
            log.info(gate.message(), extra={"event": "parity", "passed": gate.passed})
            if not gate.passed:
                raise JobError(f"{gate.message()}: the parity gate failed and the model was not registered")

            model_dir = Path(folder) / "model"
            (model_dir / "native").mkdir(parents=True)
            (model_dir / MODEL_FILE).write_bytes(onnx_bytes)
            (model_dir / "MLmodel").write_text(_mlmodel(n_features))
            (model_dir / PREPROCESSING_FILE).write_text(json.dumps(trained.encoding.to_json(), indent=2))
            native_name = "model.txt" if spec.family == LIGHTGBM else "state_dict.pt"
            trained.model.save(str(model_dir / "native" / native_name))
            profile = build_profile(
                model_name=spec.model_name, training_set_hash=data.content_hash, reference=parts.train,
                encoding=trained.encoding, predictions=gate.onnx_probabilities, seed=int(spec.seed),
            )
            (model_dir / PROFILE_FILE).write_bytes(profile.SerializeToString())
            logged_model_id = tracker.log_model(model_dir, name="model", tags={"loopline.job_id": ctx.job_id})
        facts["logged_model_id"] = logged_model_id
        reporter.update(logged_model_id=logged_model_id)

        version = 0
        if ctx.register and ctx.registry is None:
            raise JobError(f"no registry is configured (LOOPLINE_TRAINING_REGISTRY_TARGET): the model was logged to "
                           f"MLflow (run {run_id}, logged model {logged_model_id}) but not registered")
        if ctx.register and ctx.registry is not None:
            reporter.stage("registering")
            registration = ctx.registry.register(
                model_name=spec.model_name, run_id=run_id, logged_model_id=logged_model_id,
                metrics={k: trained.evaluation.metrics[k] for k in REGISTERED_METRICS},
                training_set_hash=data.content_hash, feature_service=spec.feature_service,
                code_version=ctx.code_version, parent_version=int(spec.parent_version), trigger=spec.trigger,
                reason=spec.reason, onnx_parity_passed=gate.passed,
                tags={"job_id": ctx.job_id, "family": spec.family},
                description=f"{spec.family} trained by job {ctx.job_id}", make_challenger=spec.make_challenger,
                idempotency_key=f"training-job-{ctx.job_id}",
            )
            version = registration.version
            tracker.set_tags({"loopline.registered_version": str(version)})
        tracker.end("FINISHED")
        reporter.stage("done")
        return Outcome(status=SUCCEEDED, registered_version=version,
                       metrics={k: trained.evaluation.metrics[k] for k in REGISTERED_METRICS},
                       **{k: v for k, v in facts.items() if k != "metrics"})
    except Terminated:
        _end(tracker, "KILLED")
        return Outcome(status=TERMINATED, error="the job was stopped by a signal", **facts)
    except JobError as exc:
        _end(tracker, "FAILED")
        return Outcome(status=FAILED, error=str(exc), **facts)
    except LooplineError as exc:
        _end(tracker, "FAILED")
        return Outcome(status=FAILED, error=f"{exc.code.value}: {exc.message}", **facts)
    except Exception as exc:
        log.exception("the job failed")
        _end(tracker, "FAILED")
        return Outcome(status=FAILED, error=f"{type(exc).__name__}: {exc}", **facts)


def _scratch(work_dir: Path) -> str:
    work_dir.mkdir(parents=True, exist_ok=True)
    return str(work_dir)


def _end(tracker: Tracker, status: str) -> None:
    try:
        tracker.end(status)
    except Exception as exc:  # the outcome matters more than closing the run
        log.warning("could not close the MLflow run: %s", exc)
