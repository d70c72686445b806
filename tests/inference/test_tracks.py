"""Champion and challenger in one server: weights set through the admin API (gRPC and its HTTP mirror),
sticky routing, shadow mode, and the weights and track labels in the metrics."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import grpc
import httpx
import pytest
from tritonclient.grpc import service_pb2, service_pb2_grpc

from loopline.inference.v1 import inference_pb2, inference_pb2_grpc
from tests.inference.conftest import Server

BODY = {"inputs": [{"name": "input", "shape": [1, 8], "datatype": "FP32", "data": [0.3] * 8}]}


@pytest.fixture(scope="module")
def two_tracks(model_dir: Path):  # type: ignore[no-untyped-def]
    from tests.inference.conftest import start_server

    server = start_server(model_name="scorer", model=str(model_dir / "mlp"), challenger=str(model_dir / "mlp2"))
    yield server
    server.proc.stop()


def admin(server: Server) -> inference_pb2_grpc.InferenceAdminServiceStub:
    return inference_pb2_grpc.InferenceAdminServiceStub(grpc.insecure_channel(server.grpc))


_CLIENTS: dict[str, httpx.Client] = {}


def infer(server: Server, request_id: str) -> tuple[str, str, float]:
    client = _CLIENTS.setdefault(server.base, httpx.Client(base_url=server.base, timeout=10))
    response = client.post("/v2/models/scorer/infer", json={**BODY, "id": request_id})
    assert response.status_code == 200, response.text
    doc = response.json()
    return doc["parameters"]["track"], doc["model_version"], doc["outputs"][0]["data"][0]


def metric(server: Server, name: str, **labels: str) -> float:
    total = 0.0
    for line in httpx.get(f"{server.base}/metrics").text.splitlines():
        named = line.startswith(name + "{") or line.startswith(name + " ")
        if named and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_tracks_weights_sticky_and_shadow(two_tracks: Server) -> None:
    stub = admin(two_tracks)
    tracks = stub.GetTracks(inference_pb2.GetTracksRequest(model_name="scorer"))
    assert tracks.mode == "embedded" and [t.track for t in tracks.tracks] == ["champion", "challenger"]
    assert [t.version for t in tracks.tracks] == [1, 2] and all(len(t.sha256) == 64 for t in tracks.tracks)
    assert {infer(two_tracks, f"a{i}")[0] for i in range(20)} == {"champion"}

    reply = stub.SetTrafficWeights(
        inference_pb2.SetTrafficWeightsRequest(model_name="scorer", challenger_weight=0.5, actor="test")
    )
    assert reply.previous_challenger_weight == 0.0 and reply.challenger_weight == 0.5
    seen = {f"r{i}": infer(two_tracks, f"r{i}") for i in range(200)}
    counts = Counter(track for track, _, _ in seen.values())
    assert counts["champion"] > 40 and counts["challenger"] > 40, counts
    for rid, (track, version, score) in list(seen.items())[:30]:  # sticky: same id, same track and answer
        assert infer(two_tracks, rid) == (track, version, score)
        assert version == ("1" if track == "champion" else "2")
    champion_score = next(s for t, _, s in seen.values() if t == "champion")
    challenger_score = next(s for t, _, s in seen.values() if t == "challenger")
    assert champion_score != challenger_score
    assert metric(two_tracks, "loopline_inference_track_weight", track="challenger") == 0.5

    # gRPC requests route the same way
    oip = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(two_tracks.grpc))
    tensor = service_pb2.ModelInferRequest.InferInputTensor(name="input", datatype="FP32", shape=[1, 8])
    tensor.contents.fp32_contents.extend([0.3] * 8)
    for rid, (track, version, _) in list(seen.items())[:10]:
        reply_g = oip.ModelInfer(service_pb2.ModelInferRequest(model_name="scorer", id=rid, inputs=[tensor]))
        assert (reply_g.parameters["track"].string_param, reply_g.model_version) == (track, version)

    # shadow: every answer is the champion's; the challenger scores on the side
    http_reply = httpx.post(
        f"{two_tracks.base}/v1/admin/weights",
        json={"model_name": "scorer", "challenger_weight": 0.5, "shadow": True, "actor": "test"},
    )
    assert http_reply.status_code == 200 and http_reply.json()["shadow"] is True
    assert {infer(two_tracks, f"s{i}")[0] for i in range(30)} == {"champion"}
    assert metric(two_tracks, "loopline_inference_prediction_score_count", track="shadow") >= 30
    view = httpx.get(f"{two_tracks.base}/v1/admin/tracks/scorer").json()
    assert view["shadow"] is True and {t["track"]: t["weight"] for t in view["tracks"]} == {
        "champion": 1.0, "challenger": 0.0
    }
    assert metric(two_tracks, "loopline_inference_predict_requests_total", track="challenger", protocol="grpc") >= 1


def test_admin_refuses_bad_weights(two_tracks: Server) -> None:
    stub = admin(two_tracks)
    with pytest.raises(grpc.RpcError) as err:
        stub.SetTrafficWeights(inference_pb2.SetTrafficWeightsRequest(model_name="scorer", challenger_weight=1.5))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as err:
        stub.GetTracks(inference_pb2.GetTracksRequest(model_name="nope"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    bad = httpx.post(f"{two_tracks.base}/v1/admin/weights", json={"model_name": "scorer", "challenger_weight": 2})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "INVALID_ARGUMENT"


def test_cluster_mode_serves_one_track(server_factory, model_dir: Path) -> None:  # type: ignore[no-untyped-def]
    server = server_factory(
        model_name="scorer", model=str(model_dir / "mlp2"), mode="cluster", track="challenger",
        model_version="7",
    )
    track, version, _ = infer(server, "c1")
    assert (track, version) == ("challenger", "7")
    with pytest.raises(grpc.RpcError) as err:
        admin(server).SetTrafficWeights(
            inference_pb2.SetTrafficWeightsRequest(model_name="scorer", challenger_weight=0.5)
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert admin(server).GetTracks(inference_pb2.GetTracksRequest(model_name="scorer")).mode == "cluster"


def test_failures_count_against_the_track_that_was_picked(server_factory, model_dir: Path) -> None:  # type: ignore[no-untyped-def]
    """A broken challenger (here one whose signature the request does not fit) fails on the challenger
    track, in shadow too, so a canary analysis sees its errors and not the champion's."""
    server = server_factory(model_name="scorer", model=str(model_dir / "mlp"), challenger=str(model_dir / "identity"))
    stub = admin(server)
    stub.SetTrafficWeights(inference_pb2.SetTrafficWeightsRequest(model_name="scorer", challenger_weight=1.0,
                                                                   actor="test"))
    with httpx.Client(base_url=server.base, timeout=10) as client:
        for i in range(5):
            assert client.post("/v2/models/scorer/infer", json={**BODY, "id": f"x{i}"}).status_code == 400
    oip = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(server.grpc))
    tensor = service_pb2.ModelInferRequest.InferInputTensor(name="input", datatype="FP32", shape=[1, 8])
    tensor.contents.fp32_contents.extend([0.3] * 8)
    with pytest.raises(grpc.RpcError) as failed:
        oip.ModelInfer(service_pb2.ModelInferRequest(model_name="scorer", id="g", inputs=[tensor]))
    assert failed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    name = "loopline_inference_predict_requests_total"
    assert metric(server, name, track="challenger", version="2", status="INVALID_ARGUMENT", protocol="rest") == 5
    assert metric(server, name, track="challenger", version="2", status="INVALID_ARGUMENT", protocol="grpc") == 1
    assert metric(server, name, track="champion") == 0

    # In shadow the caller gets the champion's answer; the challenger's failure is counted on "shadow".
    stub.SetTrafficWeights(inference_pb2.SetTrafficWeightsRequest(model_name="scorer", challenger_weight=0.0,
                                                                   shadow=True, actor="test"))
    assert {infer(server, f"s{i}")[0] for i in range(5)} == {"champion"}
    deadline = time.monotonic() + 10
    while metric(server, name, track="shadow", status="INVALID_ARGUMENT") < 5:
        assert time.monotonic() < deadline, "shadow failures were not counted"
