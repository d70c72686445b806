"""The contracts: generated code is fresh, protos pass buf lint, and the event conventions hold."""

from __future__ import annotations

import subprocess
import sys

from google.protobuf.descriptor import FieldDescriptor

from loopline.events.v1 import meta_pb2, models_pb2, predictions_pb2
from loopline_common.topics import TOPICS
from tests.helpers import REPO

PROTOS = [sys.executable, str(REPO / "scripts" / "protos.py")]


def test_generated_python_is_fresh() -> None:
    result = subprocess.run([*PROTOS, "check"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_a_stale_generated_file_is_detected(tmp_path) -> None:  # type: ignore[no-untyped-def]
    target = REPO / "protos" / "loopline" / "events" / "v1" / "meta_pb2.py"
    original = target.read_bytes()
    try:
        target.write_bytes(original + b"\n# edited by hand\n")
        result = subprocess.run([*PROTOS, "check"], capture_output=True, text=True, timeout=120)
        assert result.returncode == 1
        assert "stale: loopline/events/v1/meta_pb2.py" in result.stderr
    finally:
        target.write_bytes(original)


def test_buf_lint_passes() -> None:
    result = subprocess.run([*PROTOS, "lint"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_topic_message_carries_an_idempotency_key() -> None:
    """Consumers are at-least-once and idempotent: every record must carry a unique id to de-duplicate on."""
    for topic, (message_type, _) in TOPICS.items():
        descriptor = message_type.DESCRIPTOR
        if message_type is models_pb2.ModelEvent:  # a oneof of events, each with its meta
            for field in descriptor.oneofs_by_name["event"].fields:
                assert field.message_type.fields_by_name["meta"].message_type is meta_pb2.EventMeta.DESCRIPTOR
        elif message_type is predictions_pb2.PredictionLogBatch:  # batch id, and a request id per record
            assert "batch_id" in descriptor.fields_by_name
            record = descriptor.fields_by_name["records"].message_type
            assert record.fields_by_name["request_id"].type == FieldDescriptor.TYPE_STRING
        else:
            assert descriptor.fields_by_name["meta"].message_type is meta_pb2.EventMeta.DESCRIPTOR, topic


def test_topics_are_named_by_convention() -> None:
    for topic in TOPICS:
        assert topic.startswith("loopline.")
        assert topic == topic.lower()
