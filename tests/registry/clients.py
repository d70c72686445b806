"""Test clients of the registry: the same calls over gRPC and over HTTP/JSON, answering the same messages
(the HTTP answers are parsed back into the gRPC response types) and raising the same ApiError."""

from __future__ import annotations

import json
import signal
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import grpc
import httpx
from google.protobuf.json_format import MessageToDict, ParseDict
from google.protobuf.message import Message

from loopline.common.v1 import types_pb2
from loopline.registry.v1 import registry_pb2 as pb
from loopline.registry.v1 import registry_pb2_grpc as pb_grpc
from loopline_common.errors import GRPC_ERROR_DETAIL_KEY
from tests.helpers import RunningProcess, start_process


class ApiError(Exception):
    def __init__(self, code: str, message: str, details: dict[str, str], *, transport_status: object) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.details = details
        self.transport_status = transport_status  # grpc.StatusCode or HTTP status int


RESPONSES: dict[str, type[Message]] = {
    name: getattr(pb, f"{name}Response")
    for name in (
        "ListModels", "GetModel", "ListVersions", "GetVersion", "ResolveAlias", "RegisterVersion", "SetAlias",
        "DeleteAlias", "EvaluatePromotion", "Promote", "Rollback", "Archive", "TransitionStage", "ApproveVersion",
        "GetPolicy", "SetPolicy", "GetLineage", "ListAuditEntries",
    )
}


@dataclass
class Downloaded:
    header: dict[str, Any]
    data: bytes
    sha256: str


class GrpcApi:
    transport = "grpc"

    def __init__(self, target: str) -> None:
        self.channel = grpc.insecure_channel(target)
        self.stub = pb_grpc.RegistryServiceStub(self.channel)

    @staticmethod
    def _metadata(token: str | None) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {token}"),) if token else ()

    @staticmethod
    def _error(exc: grpc.RpcError) -> ApiError:
        trailing = dict(exc.trailing_metadata() or ())  # type: ignore[attr-defined]
        raw = trailing.get(GRPC_ERROR_DETAIL_KEY)
        if raw is None:
            return ApiError(exc.code().name, exc.details() or "", {}, transport_status=exc.code())  # type: ignore[attr-defined]
        detail = types_pb2.ErrorDetail.FromString(raw)
        return ApiError(detail.code, detail.message, dict(detail.details), transport_status=exc.code())  # type: ignore[attr-defined]

    def call(self, method: str, request: Message, token: str | None = None, timeout: float = 30) -> Any:
        try:
            return getattr(self.stub, method)(request, metadata=self._metadata(token), timeout=timeout)
        except grpc.RpcError as exc:
            raise self._error(exc) from None

    def download(self, request: pb.DownloadArtifactRequest, token: str | None = None) -> Downloaded:
        header: dict[str, Any] = {}
        data = bytearray()
        sha = ""
        try:
            for part in self.stub.DownloadArtifact(request, metadata=self._metadata(token), timeout=60):
                kind = part.WhichOneof("part")
                if kind == "header":
                    header = MessageToDict(part.header, preserving_proto_field_name=True)
                elif kind == "chunk":
                    data.extend(part.chunk)
                else:
                    sha = part.trailer.sha256
        except grpc.RpcError as exc:
            raise self._error(exc) from None
        return Downloaded(header, bytes(data), sha)

    def close(self) -> None:
        self.channel.close()


# HTTP route of each call: (verb, path template); fields named in the path go there, the rest go in the
# body (POST/PUT) or the query (GET/DELETE).
ROUTES: dict[str, tuple[str, str]] = {
    "ListModels": ("GET", "/v1/models"),
    "GetModel": ("GET", "/v1/models/{model_name}"),
    "ListVersions": ("GET", "/v1/models/{model_name}/versions"),
    "RegisterVersion": ("POST", "/v1/models/{model_name}/versions"),
    "GetVersion": ("GET", "/v1/models/{model_name}/versions/{version}"),
    "ResolveAlias": ("GET", "/v1/models/{model_name}/aliases/{alias}"),
    "SetAlias": ("PUT", "/v1/models/{model_name}/aliases/{alias}"),
    "DeleteAlias": ("DELETE", "/v1/models/{model_name}/aliases/{alias}"),
    "EvaluatePromotion": ("POST", "/v1/models/{model_name}:evaluate"),
    "Promote": ("POST", "/v1/models/{model_name}:promote"),
    "Rollback": ("POST", "/v1/models/{model_name}:rollback"),
    "Archive": ("POST", "/v1/models/{model_name}/versions/{version}:archive"),
    "TransitionStage": ("POST", "/v1/models/{model_name}/versions/{version}:transition"),
    "ApproveVersion": ("POST", "/v1/models/{model_name}/versions/{version}:approve"),
    "GetLineage": ("GET", "/v1/models/{model_name}/versions/{version}/lineage"),
    "GetPolicy": ("GET", "/v1/models/{model_name}/policy"),
    "SetPolicy": ("PUT", "/v1/models/{model_name}/policy"),
    "ListAuditEntries": ("GET", "/v1/audit"),
}


class HttpApi:
    transport = "http"

    def __init__(self, base_url: str) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=30)

    @staticmethod
    def _headers(token: str | None) -> dict[str, str]:
        return {"authorization": f"Bearer {token}"} if token else {}

    @staticmethod
    def _error(response: httpx.Response) -> ApiError:
        try:
            body = response.json()["error"]
        except (ValueError, KeyError, TypeError):
            return ApiError("UNKNOWN", response.text[:500], {}, transport_status=response.status_code)
        return ApiError(body["code"], body["message"], body.get("details", {}), transport_status=response.status_code)

    def request(self, method: str, request: Message) -> tuple[str, str, dict[str, Any], list[tuple[str, str]]]:
        """(verb, path, json body, query params) of a call."""
        verb, template = ROUTES[method]
        data = MessageToDict(request, preserving_proto_field_name=True)
        path = template
        for name in list(data):
            if "{" + name + "}" in path:
                path = path.replace("{" + name + "}", quote(str(data.pop(name)), safe=""))
        path = path.replace("{version}", "0")  # unset int64 path fields are 0
        query: list[tuple[str, str]] = []
        if verb in ("GET", "DELETE"):
            for key, value in data.items():
                if key == "tags":
                    query += [("tag", f"{k}={v}") for k, v in value.items()]
                else:
                    query.append((key, value if isinstance(value, str) else json.dumps(value)))
            data = {}
        return verb, path, data, query

    def call(self, method: str, request: Message, token: str | None = None, timeout: float = 30) -> Any:
        verb, path, body, query = self.request(method, request)
        response = self.http.request(verb, path, params=query, json=body if verb in ("POST", "PUT") else None,
                                     headers=self._headers(token), timeout=timeout)
        if response.status_code != 200:
            raise self._error(response)
        return ParseDict(response.json(), RESPONSES[method]())

    def download(self, request: pb.DownloadArtifactRequest, token: str | None = None) -> Downloaded:
        import hashlib

        data = MessageToDict(request, preserving_proto_field_name=True)
        path = f"/v1/models/{data.pop('model_name')}/versions/{data.pop('version', '0')}/artifact"
        with self.http.stream("GET", path, params=data, headers=self._headers(token)) as response:
            if response.status_code != 200:
                response.read()
                raise self._error(response)
            body = response.read()
        header = {
            "size_bytes": response.headers.get("content-length"),
            "expected_sha256": response.headers.get("x-loopline-sha256", ""),
            "version": response.headers.get("x-loopline-version"),
        }
        return Downloaded(header, body, hashlib.sha256(body).hexdigest())

    def close(self) -> None:
        self.http.close()


@dataclass
class RegistryProcess:
    process: RunningProcess
    http_port: int
    grpc_port: int
    env: dict[str, str]
    grpc: GrpcApi = field(init=False)
    http: HttpApi = field(init=False)

    def __post_init__(self) -> None:
        self.grpc = GrpcApi(f"127.0.0.1:{self.grpc_port}")
        self.http = HttpApi(f"http://127.0.0.1:{self.http_port}")

    @property
    def alive(self) -> bool:
        return self.process.proc.poll() is None

    def output(self) -> str:
        return self.process.output()

    def close(self, sig: int = signal.SIGTERM) -> int:
        self.grpc.close()
        self.http.close()
        return self.process.stop(sig)


def start_registry(argv: list[str], env: dict[str, str], timeout: float = 60) -> RegistryProcess:
    """Start the service and wait for its "serving" log line (failing at once if it exits instead)."""
    process = start_process(argv, {"LOOPLINE_REGISTRY_HTTP_PORT": "0", "LOOPLINE_REGISTRY_GRPC_PORT": "0", **env})
    deadline = time.monotonic() + timeout
    while True:
        try:
            serving = process.wait_for_log(lambda r: r.get("message") == "serving", timeout=0.5)
            break
        except TimeoutError:
            if process.proc.poll() is not None or time.monotonic() > deadline:
                process.stop()
                raise RuntimeError(f"the registry did not start:\n{process.output()}") from None
    return RegistryProcess(process, int(serving["http_port"]), int(serving["grpc_port"]), env)
