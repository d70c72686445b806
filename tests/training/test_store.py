"""The job store, one data model on SQLite and on Postgres: records round-trip, idempotency keys hold,
state changes are compare-and-set, claiming is exclusive, lists filter and page, drift decisions are
recorded once per event."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from loopline_training.store import (
    PENDING,
    RUNNING,
    SUCCEEDED,
    DriftDecision,
    JobRecord,
    JobStore,
    decode_page_token,
    encode_page_token,
    new_record,
)

PG_ADMIN_URL = os.environ.get("LOOPLINE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A database of its own on the machine's Postgres, dropped afterwards."""
    import psycopg

    name = f"loopline_training_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"Postgres is not reachable at {PG_ADMIN_URL}: {exc}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[JobStore]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'nested' / 'training.db'}"  # the folder is made as needed
    else:
        url = request.getfixturevalue("postgres_url")
    store = JobStore(url)
    store.create_schema()
    store.create_schema()  # idempotent
    yield store
    store.close()


def _job(model: str = "m", **values: Any) -> JobRecord:
    return new_record(job_id=uuid.uuid4().hex, model_name=model, family="lightgbm", trigger="manual",
                      reason="r", spec='{"model_name": "m"}', **values)


def test_a_job_round_trips(store: JobStore) -> None:
    record = _job(metrics={"roc_auc": 0.9}, runner_ref={"pid": 1})
    inserted, created = store.insert(record)
    assert created and store.ping()
    got = store.get(inserted.job_id)
    assert got == inserted
    assert got is not None and got.metrics == {"roc_auc": 0.9} and got.runner_ref == {"pid": 1}
    assert got.state == PENDING and got.stage == "queued" and got.revision == 1


def test_idempotency_key_returns_the_first_job(store: JobStore) -> None:
    key = f"key-{uuid.uuid4().hex}"
    first, created = store.insert(_job(idempotency_key=key))
    second, again = store.insert(_job(idempotency_key=key))
    assert created and not again and second.job_id == first.job_id


def test_transitions_are_compare_and_set_and_bump_the_revision(store: JobStore) -> None:
    job, _ = store.insert(_job())
    assert store.transition(job.job_id, from_states=[RUNNING], state=SUCCEEDED) is None
    moved = store.transition(job.job_id, from_states=[PENDING], state=RUNNING, progress=3,
                             metrics={"loss": 0.5})
    assert moved is not None and moved.state == RUNNING and moved.revision == 2 and moved.metrics == {"loss": 0.5}
    assert store.transition("missing", from_states=None, state=RUNNING) is None


def test_claiming_gives_each_pending_job_to_one_owner(store: JobStore) -> None:
    model = f"claim-{uuid.uuid4().hex[:6]}"
    for i in range(4):
        store.insert(replace(_job(model), created_at=time.time() + i))
    claimed: list[str] = []
    lock = threading.Lock()

    def worker(owner: str) -> None:
        while (job := store.claim_next(owner=owner, runner="embedded")) is not None:
            with lock:
                claimed.append(job.job_id)

    threads = [threading.Thread(target=worker, args=(f"owner-{i}",)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    mine = {j.job_id for j in store.find(model_name=model, limit=10)}
    assert len(claimed) == len(set(claimed))  # no job twice (other tests' pending jobs may be claimed too)
    assert mine <= set(claimed)  # every one of ours once
    for job in store.find(model_name=model, limit=10):
        assert job.state == RUNNING and job.attempt == 1 and job.started_at is not None and job.owner


def test_find_filters_orders_and_pages(store: JobStore) -> None:
    model = f"find-{uuid.uuid4().hex[:6]}"
    now = time.time()
    made = []
    for i, trigger in enumerate(["manual", "drift", "manual", "schedule", "drift"]):
        record, _ = store.insert(replace(_job(model), trigger=trigger, created_at=now + i))
        made.append(record)
    newest_first = [r.job_id for r in reversed(made)]
    assert [r.job_id for r in store.find(model_name=model)] == newest_first
    assert [r.trigger for r in store.find(model_name=model, trigger="drift")] == ["drift", "drift"]
    page = store.find(model_name=model, limit=2)
    token = encode_page_token(page[-1].created_at, page[-1].job_id)
    rest = store.find(model_name=model, after=decode_page_token(token))
    assert [r.job_id for r in page + rest] == newest_first
    assert [r.job_id for r in store.find(model_name=model, oldest_first=True)] == newest_first[::-1]
    store.transition(made[0].job_id, from_states=None, state=SUCCEEDED)
    assert [r.job_id for r in store.find(model_name=model, states=[SUCCEEDED])] == [made[0].job_id]
    assert store.count(SUCCEEDED) >= 1
    with pytest.raises(ValueError, match="page_token"):
        decode_page_token("not-a-token")


def test_drift_decisions_are_recorded_once_per_event(store: JobStore) -> None:
    model = f"drift-{uuid.uuid4().hex[:6]}"
    decision = DriftDecision(event_id=uuid.uuid4().hex, model_name=model, model_version=3, decided_at=time.time(),
                             decision="skipped", reason="cooldown")
    assert store.record_drift_decision(decision)
    assert not store.record_drift_decision(replace(decision, reason="again"))
    assert store.drift_decision(decision.event_id) == decision
    assert store.drift_decisions(model) == [decision]
