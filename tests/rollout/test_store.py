"""The controller's store on SQLite and on Postgres: one active rollout per model, enforced by the database;
a write against a changed row is refused; decisions go out through the outbox in order."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from loopline_rollout.policy import Policy
from loopline_rollout.store import RolloutRow, Store

from loopline_common.errors import AlreadyExists, Conflict
from tests.registry.conftest import postgres_url  # noqa: F401 - a fixture: a Postgres database of its own


def _row(model: str, *, trigger: str | None = None) -> RolloutRow:
    now = datetime.now(UTC)
    return RolloutRow(rollout_id=uuid.uuid4().hex, model_name=model, candidate_version=2, champion_version=1,
                      phase="progressing", policy=Policy().to_json(), actuator="embedded", started_by="controller",
                      started_at=now, updated_at=now, trigger_event_id=trigger)


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    url = f"sqlite:///{tmp_path / 'rollout.db'}" if request.param == "sqlite" else request.getfixturevalue(
        "postgres_url")
    made = Store(url)
    made.create_schema()
    return made


def test_one_active_rollout_per_model(store: Store) -> None:
    model = f"m-{uuid.uuid4().hex[:6]}"
    first = _row(model, trigger="event-1")
    store.create(first, (uuid.uuid4().hex, b"started"))
    with pytest.raises(AlreadyExists, match="active rollout"):
        store.create(_row(model), (uuid.uuid4().hex, b"x"))
    with pytest.raises(AlreadyExists, match="event-1"):
        store.create(_row(f"other-{model}", trigger="event-1"), (uuid.uuid4().hex, b"x"))
    assert store.active_of(model) is not None and store.active_of(model).rollout_id == first.rollout_id  # type: ignore[union-attr]

    # Once it ended, the model may have another.
    first.phase = "promoted"
    store.save(first, (uuid.uuid4().hex, b"promoted"))
    assert store.active_of(model) is None
    second = _row(model)
    store.create(second, (uuid.uuid4().hex, b"started again"))
    assert [r.rollout_id for r in store.list_rollouts(model_name=model)] == [second.rollout_id, first.rollout_id]
    assert [r.rollout_id for r in store.list_rollouts(model_name=model, active_only=True)] == [second.rollout_id]


def test_a_stale_write_is_refused_and_decisions_leave_in_order(store: Store) -> None:
    model = f"m-{uuid.uuid4().hex[:6]}"
    row = _row(model)
    store.create(row, (uuid.uuid4().hex, b"d1"))
    stale = store.get(row.rollout_id)
    assert stale is not None
    row.step, row.weight = 1, 10
    store.save(row, (uuid.uuid4().hex, b"d2"))
    stale.phase = "paused"
    with pytest.raises(Conflict):
        store.save(stale, (uuid.uuid4().hex, b"lost"))
    assert store.decisions_of(row.rollout_id) == [b"d1", b"d2"]
    fresh = store.get(row.rollout_id)
    assert fresh is not None and fresh.phase == "progressing" and fresh.weight == 10

    sent: list[bytes] = []

    def send(batch: list[tuple[int, str, bytes]]) -> list[int]:
        mine = [(seq, payload) for seq, m, payload in batch if m == model]
        sent.extend(p for _, p in mine[:1])
        return [seq for seq, _ in mine[:1]]  # the broker acknowledged only the first

    store.publish_unsent(send)
    store.publish_unsent(send)
    assert sent == [b"d1", b"d2"]
