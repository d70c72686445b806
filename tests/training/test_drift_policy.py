"""The drift-trigger policy, decided on DriftDetected events against a real job store: no template → skip;
too little new data → skip; otherwise one retraining job (trigger drift, parent version, window moved to
the newest data); no second job while one is pending or running; a cooldown after a drift-triggered job;
a redelivered event is not acted on twice; an event without a model goes to the dead-letter topic."""

from __future__ import annotations

import dataclasses
import time
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from loopline_training.convert import spec_to_json
from loopline_training.core import CoreConfig, JobService
from loopline_training.drift import DriftPolicy, DriftRetrainer
from loopline_training.runners.embedded import EmbeddedRunner
from loopline_training.spec import normalize_spec
from loopline_training.store import SUCCEEDED, JobStore, new_record

from loopline.events.v1 import drift_pb2, meta_pb2
from loopline_common.kafka_io import PoisonMessage
from loopline_common.metrics import ServiceMetrics
from tests.training.support import make_spec

Dataset = tuple[Path, tuple[datetime, datetime]]
MODEL = "fraud-drift-policy"


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def event(event_id: str, version: int = 3) -> drift_pb2.DriftDetected:
    return drift_pb2.DriftDetected(
        meta=meta_pb2.EventMeta(event_id=event_id), model_name=MODEL, model_version=version, drifted_share=0.4,
        drifted_share_threshold=0.3,
        features=[drift_pb2.FeatureDrift(feature=f"f{i}", method="psi", score=0.2 + i / 10, threshold=0.2,
                                         drifted=i > 0) for i in range(8)],
    )


@pytest.fixture
def setup(tmp_path: Path, dataset: Dataset) -> tuple[JobService, JobStore, Clock, Dataset]:
    store = JobStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    store.create_schema()
    # A real runner that is never asked to start anything: the scheduler is not running, jobs stay PENDING.
    runner = EmbeddedRunner(work_dir=tmp_path / "jobs", events=None, python="python", env={})  # type: ignore[arg-type]
    core = JobService(store=store, runner=runner, config=CoreConfig(owner="test", check_files=True),
                      metrics=ServiceMetrics("training_drift_test"))
    return core, store, Clock(), dataset


def _retrainer(core: JobService, store: JobStore, clock: Clock, *, min_new_rows: int = 100) -> DriftRetrainer:
    return DriftRetrainer(store=store, submit=lambda spec: core.submit(spec=spec)[0],
                          policy=DriftPolicy(cooldown_seconds=600, min_new_rows=min_new_rows), clock=clock)


def _succeeded_template(store: JobStore, dataset: Dataset, days: int = 30) -> str:
    path, (start, _) = dataset
    spec = normalize_spec(make_spec(path, (start, start + timedelta(days=days)), model=MODEL))
    record = new_record(job_id="template-job", model_name=MODEL, family=spec.family, trigger="manual", reason="",
                        spec=spec_to_json(spec))
    store.insert(dataclasses.replace(record, state=SUCCEEDED, registered_version=3))
    return record.job_id


def test_no_template_no_retraining(setup: tuple[JobService, JobStore, Clock, Dataset]) -> None:
    core, store, clock, _ = setup
    decision = _retrainer(core, store, clock).decide(event("e0"))
    assert decision.decision == "skipped" and f"no successful job of {MODEL}" in decision.reason


def test_too_little_new_data_no_retraining(setup: tuple[JobService, JobStore, Clock, Dataset]) -> None:
    core, store, clock, dataset = setup
    _succeeded_template(store, dataset)
    decision = _retrainer(core, store, clock, min_new_rows=100_000).decide(event("e1"))
    assert decision.decision == "skipped" and "labelled rows since" in decision.reason
    assert "the policy needs 100000" in decision.reason
    assert store.find(model_name=MODEL, trigger="drift") == []


def test_retrain_once_then_no_duplicates_then_cooldown(setup: tuple[JobService, JobStore, Clock, Dataset]) -> None:
    core, store, clock, dataset = setup
    template = _succeeded_template(store, dataset)
    retrainer = _retrainer(core, store, clock)

    first = retrainer.decide(event("a"))
    assert first.decision == "submitted" and first.job_id and template in first.reason
    job = core.get(first.job_id)
    assert job.trigger == "drift" and job.state == "PENDING"
    from loopline_training.convert import spec_from_json

    spec = spec_from_json(job.spec)
    assert spec.parent_version == 3 and spec.trigger == "drift"
    assert "7 of 8 features drifted" in spec.reason and "f7 (psi 0.9 > 0.2)" in spec.reason
    assert "and 2 more" in spec.reason
    newest = pd.read_parquet(dataset[0])["event_timestamp"].max().to_pydatetime()
    assert spec.window.end.ToDatetime(tzinfo=newest.tzinfo) == newest + timedelta(microseconds=1)
    assert spec.window.end.ToDatetime() - spec.window.start.ToDatetime() == timedelta(days=30)

    duplicate = retrainer.decide(event("b"))
    assert duplicate.decision == "skipped" and "is already pending" in duplicate.reason

    core.cancel(job_id=first.job_id, reason="test")
    clock.now += 60
    cooling = retrainer.decide(event("c"))
    assert cooling.decision == "skipped" and "cooldown" in cooling.reason and "540 s" in cooling.reason

    assert retrainer.decide(event("a")) == first  # redelivered: the recorded decision, nothing new
    assert [d.event_id for d in store.drift_decisions(MODEL)] == ["a", "b", "c"]

    clock.now += 600
    later = retrainer.decide(event("d"))
    assert later.decision == "submitted" and later.job_id != first.job_id
    assert len(store.find(model_name=MODEL, trigger="drift")) == 2


def test_an_event_without_a_model_is_poison(setup: tuple[JobService, JobStore, Clock, Dataset]) -> None:
    core, store, clock, _ = setup
    with pytest.raises(PoisonMessage):
        _retrainer(core, store, clock).handle(drift_pb2.DriftDetected())
