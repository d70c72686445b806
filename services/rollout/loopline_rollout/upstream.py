"""The registry, as the controller uses it: resolve aliases, promote, reject (remove the challenger alias)."""

from __future__ import annotations

from loopline.registry.v1 import registry_pb2, registry_pb2_grpc
from loopline_common.errors import NotFound
from loopline_common.grpc_client import ServiceClient


class Registry:
    def __init__(self, *, target: str, token: str, timeout: float) -> None:
        self.client = ServiceClient(service="registry", target=target, token=token or None, timeout=timeout,
                                    asynchronous=True)
        self.stub = registry_pb2_grpc.RegistryServiceStub(self.client.channel)  # type: ignore[no-untyped-call]

    async def alias(self, model: str, alias: str) -> int:
        """The version `alias` points at, 0 if the alias (or the model) does not exist."""
        try:
            got = await self.client.acall(self.stub.ResolveAlias,
                                          registry_pb2.ResolveAliasRequest(model_name=model, alias=alias),
                                          idempotent=True)
        except NotFound:
            return 0
        return int(got.version)

    async def promote(self, model: str, version: int, reason: str) -> registry_pb2.PromoteResponse:
        response: registry_pb2.PromoteResponse = await self.client.acall(
            self.stub.Promote, registry_pb2.PromoteRequest(model_name=model, version=version, reason=reason[:1000]),
            idempotent=True)  # promoting to the version already champion changes nothing
        return response

    async def remove_alias(self, model: str, alias: str, reason: str) -> None:
        await self.client.acall(self.stub.DeleteAlias,
                                registry_pb2.DeleteAliasRequest(model_name=model, alias=alias, reason=reason[:1000]),
                                idempotent=True)

    async def close(self) -> None:
        await self.client.aclose()
