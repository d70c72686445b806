"""The audit log on both stores (SQLite embedded, Postgres in a cluster): an entry for each mutation with
who, what, when, why, before and after; queryable by model, actor and time; kept across restarts."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from loopline_registry.auth import Role

from loopline.registry.v1 import registry_pb2 as pb
from tests.registry.conftest import token
from tests.registry.seed import make_run, unique
from tests.registry.test_auth import _mutations

READER = token(Role.READER)


def _ts(value: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_every_mutation_is_audited_durably_and_queryable(  # type: ignore[no-untyped-def]
    store: str, registry_factory, mlflow_server: str, request: pytest.FixtureRequest, tmp_path
) -> None:
    url = request.getfixturevalue("postgres_url") if store == "postgres" else f"sqlite:///{tmp_path / 'audit.db'}"
    registry = registry_factory(store_url=url)
    model = unique()
    run = make_run(mlflow_server)
    started = datetime.now(UTC) - timedelta(seconds=1)
    registry.grpc.call("RegisterVersion", pb.RegisterVersionRequest(model_name=model, run_id=run.run_id),
                       token(Role.TRAINER))
    for i, (method, message, role) in enumerate(_mutations(model, run.run_id)):
        client = registry.grpc if i % 2 else registry.http  # both transports write the same log
        client.call(method, message, token(role))
    ended = datetime.now(UTC) + timedelta(seconds=1)

    def entries(**filters: object) -> list[pb.AuditEntry]:
        reply = registry.grpc.call("ListAuditEntries", pb.ListAuditEntriesRequest(page_size=1000, **filters),  # type: ignore[arg-type]
                                   READER)
        return list(reply.entries)

    log = list(reversed(entries(model_name=model)))  # oldest first
    actions = [e.action for e in log]
    assert actions == [
        "register", "register", "set_alias", "delete_alias", "approve", "promote", "transition_stage",
        "promote", "promote",  # v2 becomes champion (and loses the challenger alias)
        "rollback", "archive", "set_policy",
    ]
    by_action = {e.action: e for e in log}
    alias_set = by_action["set_alias"]
    assert (alias_set.actor, alias_set.role, alias_set.alias, alias_set.version, alias_set.reason) == (
        "releaser-bot", "releaser", "shadow", 1, "r")
    assert json.loads(alias_set.before) == {"alias": "shadow", "version": None}
    assert json.loads(alias_set.after) == {"alias": "shadow", "version": 1}
    assert alias_set.request_id and alias_set.occurred_at.ToDatetime(tzinfo=UTC) >= started
    rollback = by_action["rollback"]
    assert (json.loads(rollback.before)["version"], json.loads(rollback.after)["version"]) == (2, 1)
    archive = by_action["archive"]
    assert json.loads(archive.after) == {"archived": True, "aliases": []}
    register = log[0]
    assert register.actor == "trainer-bot" and json.loads(register.after)["run_id"] == run.run_id
    assert json.loads(by_action["set_policy"].after) == {"policy": {"metrics": [], "require_approval": False,
                                                                    "require_onnx_parity": True}}

    # By actor, by time window, by action, paged.
    assert {e.action for e in entries(model_name=model, actor="admin-bot")} == {"set_policy"}
    assert len(entries(model_name=model, since=_ts(started), until=_ts(ended))) == len(log)
    assert entries(model_name=model, until=_ts(started)) == []
    assert [e.action for e in entries(model_name=model, action="promote")] == ["promote"] * 3
    first = registry.http.call("ListAuditEntries", pb.ListAuditEntriesRequest(model_name=model, page_size=5), READER)
    second = registry.http.call("ListAuditEntries", pb.ListAuditEntriesRequest(
        model_name=model, page_size=5, page_token=first.next_page_token), READER)
    assert [e.id for e in first.entries] + [e.id for e in second.entries] == [e.id for e in reversed(log)][:10]

    # Durable: a new process on the same store answers the same log.
    registry.close()
    again = registry_factory(store_url=url)
    reply = again.grpc.call("ListAuditEntries", pb.ListAuditEntriesRequest(model_name=model, page_size=1000), READER)
    assert [e.id for e in reply.entries] == [e.id for e in reversed(log)]
