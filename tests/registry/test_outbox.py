"""Model events reach Kafka exactly once per change as seen by a consumer that de-duplicates on event_id,
even when the registry dies between the MLflow write and the publish (the transactional outbox)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
from loopline_registry.auth import Role

from loopline.events.v1 import models_pb2
from loopline.registry.v1 import registry_pb2 as pb
from tests.helpers import Broker
from tests.registry.clients import ApiError, RegistryProcess
from tests.registry.conftest import token
from tests.registry.events import ModelEvents, kinds
from tests.registry.seed import make_run, unique

TRAINER, RELEASER, READER = token(Role.TRAINER), token(Role.RELEASER), token(Role.READER)
FAULT_EXIT = 70


@pytest.fixture
def events(broker: Broker) -> Iterator:  # type: ignore[type-arg]
    opened: list[ModelEvents] = []

    def open_(model: str) -> ModelEvents:
        opened.append(ModelEvents(broker.bootstrap, model))
        return opened[-1]

    yield open_
    for consumer in opened:
        consumer.close()


def _alias_events(events: list[models_pb2.ModelEvent], alias: str) -> list[models_pb2.AliasChanged]:
    return [e.alias_changed for e in events
            if e.WhichOneof("event") == "alias_changed" and e.alias_changed.alias == alias]


def _marker(registry: RegistryProcess, watcher: ModelEvents, model: str) -> None:
    """Make one more change and wait for its event: the outbox publishes in order, so anything the
    earlier changes would still publish is on the topic before it."""
    registry.grpc.call("SetAlias", pb.SetAliasRequest(model_name=model, alias="marker", version=1), RELEASER)
    watcher.wait_until(lambda seen: bool(_alias_events(seen, "marker")))


def test_events_of_each_change(registry: RegistryProcess, mlflow_server: str, events) -> None:  # type: ignore[no-untyped-def]
    model = unique()
    watcher = events(model)
    run = make_run(mlflow_server, metrics={"roc_auc": 0.9})
    registry.grpc.call("RegisterVersion", pb.RegisterVersionRequest(
        model_name=model, run_id=run.run_id, trigger="drift", reason="new data", tags={"team": "risk"}), TRAINER)
    registry.grpc.call("RegisterVersion", pb.RegisterVersionRequest(
        model_name=model, run_id=run.run_id, parent_version=1), TRAINER)
    registry.grpc.call("Promote", pb.PromoteRequest(model_name=model, version=1, reason="go"), RELEASER)
    registry.http.call("Archive", pb.ArchiveRequest(model_name=model, version=2, reason="superseded"), RELEASER)
    watcher.wait_until(lambda seen: kinds(seen) == ["registered", "registered", "alias_changed", "archived"])

    first, second, champion, archived = watcher.unique
    assert (first.registered.version, first.registered.run_id, first.registered.trigger) == (1, run.run_id, "drift")
    assert dict(first.registered.metrics) == {"roc_auc": 0.9} and dict(first.registered.tags) == {"team": "risk"}
    assert first.registered.reason == "new data" and second.registered.parent_version == 1
    change = champion.alias_changed
    assert (change.alias, change.previous_version, change.new_version, change.actor, change.reason) == (
        "champion", 0, 1, "releaser-bot", "go")
    assert (archived.archived.version, archived.archived.actor, archived.archived.reason) == (
        2, "releaser-bot", "superseded")
    metas = [getattr(e, str(e.WhichOneof("event"))).meta for e in watcher.unique]
    assert all(m.producer == "registry" and m.request_id and m.occurred_at.seconds for m in metas)
    assert len({m.event_id for m in metas}) == 4
    assert set(watcher.keys) == {model.encode()}


def test_killed_after_the_mlflow_write_the_event_still_arrives_once(  # type: ignore[no-untyped-def]
    registry: RegistryProcess, registry_factory, mlflow_server: str, events, tmp_path
) -> None:
    model = unique()
    watcher = events(model)
    registry.grpc.call("RegisterVersion", pb.RegisterVersionRequest(
        model_name=model, run_id=make_run(mlflow_server).run_id), TRAINER)
    store = f"sqlite:///{tmp_path / 'outbox.db'}"
    doomed = registry_factory(store_url=store, instance="kill-a", LOOPLINE_REGISTRY_TEST_FAULTS="after_mlflow_write")
    with pytest.raises(ApiError):
        doomed.grpc.call("SetAlias", pb.SetAliasRequest(model_name=model, alias="challenger", version=1,
                                                         reason="before the crash"), RELEASER)
    assert doomed.process.proc.wait(30) == FAULT_EXIT
    # MLflow has the change; Kafka does not have its event.
    resolved = registry.grpc.call("ResolveAlias", pb.ResolveAliasRequest(model_name=model, alias="challenger"),
                                  READER)
    assert resolved.version == 1

    revived = registry_factory(store_url=store, instance="kill-a")
    watcher.wait_until(lambda seen: bool(_alias_events(seen, "challenger")))
    _marker(revived, watcher, model)
    recovered = _alias_events(watcher.raw, "challenger")
    assert len(recovered) == 1  # not even a duplicate to drop
    assert (recovered[0].new_version, recovered[0].actor) == (1, "releaser-bot")
    assert recovered[0].reason == "before the crash"
    audit = revived.grpc.call("ListAuditEntries", pb.ListAuditEntriesRequest(model_name=model, action="set_alias"),
                              READER)
    assert [(e.alias, e.actor) for e in audit.entries] == [("marker", "releaser-bot"), ("challenger", "releaser-bot")]


def test_killed_after_publishing_the_event_is_sent_again_with_the_same_id(  # type: ignore[no-untyped-def]
    registry: RegistryProcess, registry_factory, mlflow_server: str, events, tmp_path
) -> None:
    model = unique()
    watcher = events(model)
    registry.grpc.call("RegisterVersion", pb.RegisterVersionRequest(
        model_name=model, run_id=make_run(mlflow_server).run_id), TRAINER)
    store = f"sqlite:///{tmp_path / 'outbox.db'}"
    doomed = registry_factory(store_url=store, instance="kill-b", LOOPLINE_REGISTRY_TEST_FAULTS="after_publish")
    with contextlib.suppress(ApiError):  # the answer may or may not get out before the relay exits
        doomed.grpc.call("SetAlias", pb.SetAliasRequest(model_name=model, alias="challenger", version=1), RELEASER)
    assert doomed.process.proc.wait(30) == FAULT_EXIT

    revived = registry_factory(store_url=store, instance="kill-b")
    _marker(revived, watcher, model)
    sent = _alias_events(watcher.raw, "challenger")
    assert len(sent) == 2  # acknowledged by Kafka, not marked sent, sent again after the restart ...
    assert sent[0].meta.event_id == sent[1].meta.event_id
    assert len(_alias_events(watcher.unique, "challenger")) == 1  # ... and seen once after de-duplication


def test_killed_registration_is_recovered_with_its_version(  # type: ignore[no-untyped-def]
    registry_factory, mlflow_server: str, events, tmp_path
) -> None:
    model = unique()
    watcher = events(model)
    run = make_run(mlflow_server)
    store = f"sqlite:///{tmp_path / 'outbox.db'}"
    doomed = registry_factory(store_url=store, instance="kill-c", LOOPLINE_REGISTRY_TEST_FAULTS="after_mlflow_write")
    with pytest.raises(ApiError):
        doomed.grpc.call("RegisterVersion", pb.RegisterVersionRequest(model_name=model, run_id=run.run_id,
                                                                      reason="nightly"), TRAINER)
    assert doomed.process.proc.wait(30) == FAULT_EXIT

    revived = registry_factory(store_url=store, instance="kill-c")
    watcher.wait_until(lambda seen: kinds(seen) == ["registered"])
    registered = watcher.unique[0].registered
    assert (registered.version, registered.run_id, registered.reason) == (1, run.run_id, "nightly")
    audit = revived.grpc.call("ListAuditEntries", pb.ListAuditEntriesRequest(model_name=model), READER).entries
    assert [(e.action, e.version) for e in audit] == [("register", 1)]
