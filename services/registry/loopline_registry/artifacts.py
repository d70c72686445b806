"""Artifacts of a version: checksums recorded at registration, and downloads verified against them.

Artifacts are read through MLflow's artifact proxy (`mlflow-artifacts:` URIs), so the registry needs no
object-store credentials and other services need no MLflow client.
"""

from __future__ import annotations

import hashlib
import json
import logging
import posixpath
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import yaml

from loopline_common.errors import FailedPrecondition, Internal, InvalidArgument
from loopline_registry.mlflow_rest import MlflowRest, UpstreamError

log = logging.getLogger(__name__)

MAX_ARTIFACT_FILES = 500
MAX_ARTIFACT_DEPTH = 8


@dataclass
class Download:
    """An artifact being streamed: header facts, then `chunks()`; `sha256` is set once it is complete."""

    model_name: str
    version: int
    path: str
    size_bytes: int
    expected_sha256: str
    _chunks: AsyncIterator[bytes]
    sha256: str = ""
    sent_bytes: int = 0
    _hash: Any = field(default_factory=hashlib.sha256)

    async def chunks(self) -> AsyncIterator[bytes]:
        async for chunk in self._chunks:
            self._hash.update(chunk)
            self.sent_bytes += len(chunk)
            yield chunk
        self.sha256 = self._hash.hexdigest()
        if self.expected_sha256 and self.sha256 != self.expected_sha256:
            log.error(
                "checksum mismatch for %s v%d %s: recorded %s, read %s", self.model_name, self.version, self.path,
                self.expected_sha256, self.sha256,
            )
            raise Internal(
                f"checksum mismatch for {self.path} of {self.model_name} v{self.version}: the stored artifact "
                "differs from the one registered",
                details={"expected_sha256": self.expected_sha256, "sha256": self.sha256},
            )


async def scan_artifacts(mlflow: MlflowRest, artifact_uri: str, *, max_bytes: int) -> tuple[list[dict[str, Any]], str]:
    """Every file under an artifact root with its size and sha256 (files over `max_bytes` get none), and
    the signature of its MLmodel file as JSON. Raises UpstreamError, or FailedPrecondition when there is
    nothing (or too much) to register."""
    try:
        root = mlflow.artifact_path(artifact_uri)
    except UpstreamError:
        log.warning("artifacts at %s are not behind MLflow's artifact proxy: no checksums", artifact_uri)
        return [], ""
    files: list[dict[str, Any]] = []
    signature = ""
    folders = [("", 0)]
    while folders:
        folder, depth = folders.pop()
        for item in await mlflow.list_artifacts(posixpath.join(root, folder) if folder else root):
            relative = posixpath.join(folder, str(item.get("path", "")).rsplit("/", 1)[-1])
            if item.get("is_dir"):
                if depth < MAX_ARTIFACT_DEPTH:
                    folders.append((relative, depth + 1))
                continue
            if len(files) >= MAX_ARTIFACT_FILES:
                raise FailedPrecondition(f"the model has more than {MAX_ARTIFACT_FILES} artifact files")
            size = int(item.get("file_size", 0) or 0)
            digest = hashlib.sha256()
            keep = relative == "MLmodel"
            kept = bytearray()
            if size <= max_bytes:
                async for chunk in mlflow.stream_artifact(posixpath.join(root, relative)):
                    digest.update(chunk)
                    if keep:
                        kept.extend(chunk)
            files.append({"path": relative, "size": size, "sha256": digest.hexdigest() if size <= max_bytes else ""})
            if keep:
                signature = _signature(bytes(kept))
    if not files:
        raise FailedPrecondition(f"no artifacts at {artifact_uri}: log the model before registering it")
    files.sort(key=lambda f: str(f["path"]))
    return files, signature


def artifact_relpath(path: str, *, field: str) -> str:
    """A normalized relative path below an artifact root; InvalidArgument for anything that could escape."""
    if len(path) > 500 or "\\" in path or "\x00" in path or path.startswith("/"):
        raise InvalidArgument(f"{field} must be a relative path below the artifact root", details={"field": field})
    normalized = posixpath.normpath(path)
    if normalized in (".", "") or normalized.startswith("..") or "/../" in f"/{normalized}/":
        raise InvalidArgument(f"{field} must be a relative path below the artifact root", details={"field": field})
    return normalized


def _signature(mlmodel: bytes) -> str:
    try:
        data = yaml.safe_load(mlmodel.decode())
    except (yaml.YAMLError, UnicodeDecodeError):
        return ""
    if isinstance(data, dict) and isinstance(data.get("signature"), dict):
        return json.dumps(data["signature"], sort_keys=True)
    return ""
