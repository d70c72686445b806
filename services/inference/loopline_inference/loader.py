"""Where models come from: a local path (KServe's /mnt/models) or the registry (`name@alias`, a pinned
version), and the loading itself (bytes to a warmed-up `OnnxModel`), run off the event loop."""

from __future__ import annotations

import re
from dataclasses import dataclass

from loopline_common.errors import FailedPrecondition, InvalidArgument
from loopline_inference.model import OnnxModel, load_model, read_local
from loopline_inference.registry import RegistryClient

_REGISTRY_REF = re.compile(r"^(?:models:/)?(?P<name>[A-Za-z0-9_.-]+)(?:@(?P<alias>[A-Za-z0-9_.-]+)|/(?P<version>\d+))$")


@dataclass(frozen=True, slots=True)
class ModelRef:
    """A model reference: `path` for a local file or folder, else registry `name` with `alias` or `version`."""

    path: str = ""
    name: str = ""
    alias: str = ""
    version: int = 0

    @property
    def from_registry(self) -> bool:
        return not self.path

    def describe(self) -> str:
        if self.path:
            return f"path:{self.path}"
        return f"registry:{self.name}@{self.alias}" if self.alias else f"registry:{self.name}/{self.version}"


def parse_ref(text: str) -> ModelRef:
    """`models:/fraud@champion`, `fraud@champion`, `models:/fraud/3` → registry; anything else is a path."""
    text = text.strip()
    if not text:
        raise InvalidArgument("empty model reference")
    if text.startswith("models:/") or ("@" in text and "/" not in text):
        match = _REGISTRY_REF.match(text)
        if match is None:
            raise InvalidArgument(f"bad registry reference {text!r}: use name@alias or models:/name/<version>")
        return ModelRef(name=match["name"], alias=match["alias"] or "", version=int(match["version"] or 0))
    return ModelRef(path=text.removeprefix("file://"))


class ModelLoader:
    def __init__(
        self, *, model_name: str, registry: RegistryClient | None, threads: int, local_version: int, model_file: str
    ) -> None:
        self.model_name = model_name
        self.registry = registry
        self.threads = threads
        self.local_version = local_version
        self.model_file = model_file

    def resolve(self, ref: ModelRef) -> int:
        """The version a reference means now (local paths: the configured local version)."""
        if not ref.from_registry:
            return self.local_version
        if ref.version:
            return ref.version
        return self._registry().resolve(ref.name, ref.alias)

    def load(self, ref: ModelRef, *, version: int | None = None) -> OnnxModel:
        """Load (blocking: call it in a thread) the model a reference means, or the given version of it
        (for a local path: the version number to report)."""
        if not ref.from_registry:
            data, path = read_local(ref.path, self.model_file)
            return load_model(
                name=self.model_name, version=version or self.local_version, source=f"path:{path}", data=data,
                threads=self.threads,
            )
        registry = self._registry()
        number = version or ref.version or registry.resolve(ref.name, ref.alias)
        artifact = registry.download(ref.name, number)
        return load_model(
            name=self.model_name, version=number, source=f"{ref.describe()} (version {number})", data=artifact.data,
            threads=self.threads,
        )

    def _registry(self) -> RegistryClient:
        if self.registry is None:
            raise FailedPrecondition("a registry reference needs LOOPLINE_INFERENCE_REGISTRY_ADDRESS")
        return self.registry
