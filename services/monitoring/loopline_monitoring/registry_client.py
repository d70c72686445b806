"""Where reference profiles come from: the registry (DownloadArtifact, checksum verified), or a folder."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import grpc

from loopline.registry.v1 import registry_pb2, registry_pb2_grpc
from loopline_common.errors import REQUEST_ID_KEY, Internal, InvalidArgument, NotFound
from loopline_common.grpc_client import RETRYABLE, RetryPolicy, ServiceClient, error_from_rpc
from loopline_common.logs import current_request_id, new_request_id

PROFILE_FILE = "reference_profile.pb"


class RegistryProfiles:
    """Reference profiles over the registry's gRPC API.

    DownloadArtifact streams a header, the chunks and a trailer; the bytes are accepted only when their
    sha256 equals both the trailer's and, if the registry recorded one at registration, the header's.
    Retries (UNAVAILABLE, DEADLINE_EXCEEDED) happen within the call's deadline, like ServiceClient's.
    """

    def __init__(self, *, target: str, token: str = "", timeout: float = 10.0) -> None:
        self.client = ServiceClient(service="registry", target=target, token=token or None, timeout=timeout)
        self._token = token
        self.stub = registry_pb2_grpc.RegistryServiceStub(self.client.channel)  # type: ignore[no-untyped-call]
        self.retry = RetryPolicy()

    def _metadata(self) -> tuple[tuple[str, str], ...]:
        metadata = [(REQUEST_ID_KEY, current_request_id() or new_request_id())]
        if self._token:
            metadata.append(("authorization", f"Bearer {self._token}"))
        return tuple(metadata)

    def fetch(self, *, model_name: str, version: int) -> bytes:
        request = registry_pb2.DownloadArtifactRequest(
            model_name=model_name, version=version, kind=registry_pb2.ARTIFACT_KIND_REFERENCE_PROFILE
        )
        deadline = time.monotonic() + self.client.timeout
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._download(request, deadline)
            except grpc.RpcError as exc:
                error = error_from_rpc(exc, service="registry")
                pause = self.retry.backoff(attempt + 1)
                if error.code not in RETRYABLE or attempt >= self.retry.max_attempts or (
                    time.monotonic() + pause >= deadline
                ):
                    raise error from None
                time.sleep(pause)

    def _download(self, request: registry_pb2.DownloadArtifactRequest, deadline: float) -> bytes:
        header = registry_pb2.ArtifactHeader()
        trailer: registry_pb2.ArtifactTrailer | None = None
        data = bytearray()
        stream = self.stub.DownloadArtifact(
            request, timeout=max(0.001, deadline - time.monotonic()), metadata=self._metadata()
        )
        for part in stream:
            kind = part.WhichOneof("part")
            if kind == "header":
                header = part.header
            elif kind == "chunk":
                data.extend(part.chunk)
            elif kind == "trailer":
                trailer = part.trailer
        digest = hashlib.sha256(data).hexdigest()
        where = f"{request.model_name} v{request.version} {header.path or 'reference profile'}"
        if trailer is None or trailer.sha256 != digest:
            raise Internal(f"registry: the download of {where} is incomplete or corrupt (checksum mismatch)")
        if header.expected_sha256 and header.expected_sha256 != digest:
            raise Internal(f"registry: {where} does not match the checksum recorded at registration")
        return bytes(data)

    def feature_service(self, *, model_name: str, version: int) -> str:
        """The feature service (e.g. fraud_v1) a version was trained on, from its lineage ("" if unknown)."""
        response = self.client.call(
            self.stub.GetVersion, registry_pb2.GetVersionRequest(model_name=model_name, version=version),
            idempotent=True,
        )
        return str(response.version.lineage.feature_service)

    def close(self) -> None:
        self.client.close()


class DirectoryProfiles:
    """Reference profiles from a folder: <root>/<model>/<version>/reference_profile.pb (embedded mode, tests)."""

    def __init__(self, root: str) -> None:
        self.root = Path(root)

    def fetch(self, *, model_name: str, version: int) -> bytes:
        if "/" in model_name or model_name.startswith("."):
            raise InvalidArgument(f"invalid model name {model_name!r}")
        path = self.root / model_name / str(version) / PROFILE_FILE
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise NotFound(f"no reference profile at {path}") from None
