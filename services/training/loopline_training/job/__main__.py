"""`python -m loopline_training.job`: run one training job and write its result.

    python -m loopline_training.job --job-id ID (--spec-file FILE | --spec-env VAR) --work-dir DIR
        --result-file FILE [--progress-file FILE]

Settings come from LOOPLINE_TRAINING_* variables (see settings.JobSettings). Exit status: 0 succeeded,
1 failed, 2 bad arguments or settings, 143 stopped by SIGTERM (the result file says the same).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path
from types import FrameType

from google.protobuf.json_format import ParseError

from loopline_common.errors import LooplineError
from loopline_common.logs import configure_logging
from loopline_common.settings import SettingsError, load_settings
from loopline_training.convert import spec_from_json
from loopline_training.job.errors import Terminated
from loopline_training.protocol import FAILED, SUCCEEDED, TERMINATED, Outcome, write_result
from loopline_training.settings import JobSettings
from loopline_training.spec import normalize_spec
from loopline_training.version import code_version

log = logging.getLogger("loopline_training.job")


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m loopline_training.job", description=__doc__.split("\n")[0])
    parser.add_argument("--job-id", required=True)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--spec-file", help="the job spec (JobSpec in proto3 JSON)")
    source.add_argument("--spec-env", help="an environment variable holding the job spec")
    parser.add_argument("--work-dir", required=True, help="scratch folder of the job")
    parser.add_argument("--result-file", required=True, help="where the result goes (JSON)")
    parser.add_argument("--progress-file", help="where progress reports are appended (JSON lines)")
    return parser.parse_args(argv)


def _on_signal(signum: int, _frame: FrameType | None) -> None:
    signal.signal(signum, signal.SIG_IGN)  # once is enough
    raise Terminated(signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    result_file = Path(args.result_file)
    configure_logging(service="training-job", level=os.environ.get("LOOPLINE_TRAINING_LOG_LEVEL", "INFO"))
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:
        outcome = _run(args)
    except Terminated:
        outcome = Outcome(status=TERMINATED, error="the job was stopped by a signal before it started")
    write_result(result_file, outcome)
    log.info("job finished", extra={"event": "result", "status": outcome.status, "error": outcome.error[:500],
                                    "registered_version": outcome.registered_version})
    return {SUCCEEDED: 0, FAILED: 1, TERMINATED: 143}.get(outcome.status, 1)


def _run(args: argparse.Namespace) -> Outcome:
    try:
        settings = load_settings(JobSettings)
    except SettingsError as exc:
        return Outcome(status=FAILED, error=str(exc))
    try:
        text = Path(args.spec_file).read_text() if args.spec_file else os.environ.get(args.spec_env, "")
        spec = normalize_spec(spec_from_json(text), features_available=bool(settings.features_target))
    except (OSError, ParseError, ValueError) as exc:
        return Outcome(status=FAILED, error=f"cannot read the job spec: {exc}")
    except LooplineError as exc:
        return Outcome(status=FAILED, error=exc.message)

    from loopline_training.clients import FeaturesClient, RegistryClient
    from loopline_training.job.pipeline import JobContext, run
    from loopline_training.job.reporter import ProgressReporter
    from loopline_training.job.tracking import MlflowTracker, bound_mlflow_http

    bound_mlflow_http(timeout_seconds=settings.mlflow_timeout_seconds, max_retries=settings.mlflow_max_retries)
    features = FeaturesClient(target=settings.features_target) if settings.features_target else None
    registry = RegistryClient(target=settings.registry_target, token=settings.registry_token.get_secret_value(),
                              timeout=settings.registry_timeout_seconds) if settings.registry_target else None
    try:
        context = JobContext(
            job_id=args.job_id, spec=spec, work_dir=Path(args.work_dir),
            reporter=ProgressReporter(Path(args.progress_file) if args.progress_file else None),
            tracker=MlflowTracker(tracking_uri=settings.mlflow_uri, flush_seconds=settings.metrics_flush_seconds,
                                  batch_metrics=settings.metrics_batch_size),
            features=features, registry=registry, code_version=code_version(settings.code_version),
            experiment_prefix=settings.experiment_prefix, features_timeout=settings.features_timeout_seconds,
        )
        return run(context)
    finally:
        if registry is not None:
            registry.close()
        if features is not None:
            features.close()


if __name__ == "__main__":
    sys.exit(main())
