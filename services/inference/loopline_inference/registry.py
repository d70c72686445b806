"""The model registry adapter: resolve `name@alias` to a version and download a version's ONNX file over
the registry's gRPC API (RegistryService.ResolveAlias / DownloadArtifact), verifying its sha256."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import grpc

from loopline.registry.v1 import registry_pb2, registry_pb2_grpc
from loopline_common.errors import FailedPrecondition, NotFound, Unavailable


@dataclass(frozen=True, slots=True)
class Artifact:
    model_name: str
    version: int
    data: bytes
    sha256: str


class RegistryClient:
    def __init__(self, address: str, *, timeout_seconds: float = 60.0) -> None:
        self.address = address
        self.timeout = timeout_seconds

    def _stub(self, channel: grpc.Channel) -> registry_pb2_grpc.RegistryServiceStub:
        return registry_pb2_grpc.RegistryServiceStub(channel)  # type: ignore[no-untyped-call]

    def resolve(self, model_name: str, alias: str) -> int:
        """The version `alias` points at."""
        with grpc.insecure_channel(self.address) as channel:
            try:
                response = self._stub(channel).ResolveAlias(
                    registry_pb2.ResolveAliasRequest(model_name=model_name, alias=alias), timeout=self.timeout
                )
            except grpc.RpcError as exc:
                raise _translate(exc, f"{model_name}@{alias}") from None
        return int(response.version)

    def download(self, model_name: str, version: int) -> Artifact:
        """The ONNX model file of a version, checked against the checksum recorded at registration and
        against the trailer's checksum of the bytes sent."""
        request = registry_pb2.DownloadArtifactRequest(
            model_name=model_name, version=version, kind=registry_pb2.ARTIFACT_KIND_MODEL
        )
        digest = hashlib.sha256()
        chunks: list[bytes] = []
        expected = trailer = ""
        with grpc.insecure_channel(self.address) as channel:
            try:
                for part in self._stub(channel).DownloadArtifact(request, timeout=self.timeout):
                    which = part.WhichOneof("part")
                    if which == "header":
                        expected = part.header.expected_sha256
                    elif which == "chunk":
                        digest.update(part.chunk)
                        chunks.append(part.chunk)
                    elif which == "trailer":
                        trailer = part.trailer.sha256
            except grpc.RpcError as exc:
                raise _translate(exc, f"{model_name} version {version}") from None
        actual = digest.hexdigest()
        for label, want in (("registered", expected), ("sent", trailer)):
            if want and want != actual:
                raise FailedPrecondition(
                    f"checksum mismatch for {model_name} version {version}: {label} sha256 {want}, got {actual}",
                    details={"expected": want, "actual": actual},
                )
        if not trailer:
            raise Unavailable(f"download of {model_name} version {version} ended without its trailer")
        return Artifact(model_name, version, b"".join(chunks), actual)


def _translate(exc: grpc.RpcError, what: str) -> Exception:
    code = exc.code() if hasattr(exc, "code") else None
    if code == grpc.StatusCode.NOT_FOUND:
        return NotFound(f"registry has no {what}")
    if code in (None, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED):
        return Unavailable(f"registry unavailable while fetching {what} ({getattr(code, 'name', 'error')})")
    # The registry answered and refused (e.g. its own checksum check of the stored artifact failed).
    details = exc.details() if hasattr(exc, "details") else ""
    return FailedPrecondition(f"registry refused {what} ({code.name}): {details}")
