"""The MLflow adapter: MLflow's REST API over httpx, with a bound on every request and no hidden retries.

MLflow's own client retries for minutes by default; this adapter answers within `timeout` or raises
`UpstreamError`, and remembers for `retry_after` seconds that MLflow did not answer (`available` is False
meanwhile) so that writes fail fast and reads go to the cache. The core translates `UpstreamError` into
Loopline's error codes with its own wording: MLflow's messages are never forwarded.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

log = logging.getLogger(__name__)

API = "/api/2.0/mlflow"
ARTIFACTS_API = "/api/2.0/mlflow-artifacts/artifacts"
SEARCH_PAGE = 5000


class UpstreamError(Exception):
    """MLflow failed. `kind`: not_found | invalid | exists | unavailable | failed.

    `applied_unknown` is True when a write may or may not have taken effect (a timeout after the request
    was sent, or a server error), False when it certainly did not (connection refused, a 4xx answer).
    """

    def __init__(self, kind: str, detail: str, *, status: int = 0, applied_unknown: bool = False) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail  # for logs only: may contain MLflow's wording
        self.status = status
        self.applied_unknown = applied_unknown


_KIND_BY_CODE = {
    "RESOURCE_DOES_NOT_EXIST": "not_found",
    "RESOURCE_ALREADY_EXISTS": "exists",
    "INVALID_PARAMETER_VALUE": "invalid",
    "BAD_REQUEST": "invalid",
    "INVALID_STATE": "invalid",
    "TEMPORARILY_UNAVAILABLE": "unavailable",
}


class MlflowRest:
    def __init__(self, *, base_url: str, timeout: float, retry_after: float, artifact_timeout: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.retry_after = retry_after
        self.artifact_timeout = artifact_timeout
        self._down_until = 0.0
        # keep-alive shorter than uvicorn's 5 s, so an idle connection is never reused as the server drops it
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=16, keepalive_expiry=4.0),
        )

    @property
    def available(self) -> bool:
        """False for `retry_after` seconds after MLflow failed to answer."""
        return time.monotonic() >= self._down_until

    def _mark_down(self) -> None:
        self._down_until = time.monotonic() + self.retry_after

    async def close(self) -> None:
        await self._client.aclose()

    async def _call(
        self, method: str, path: str, *, params: dict[str, Any] | None = None, body: dict[str, Any] | None = None,
        prefix: str = API,
    ) -> dict[str, Any]:
        try:
            response = await self._client.request(method, prefix + path, params=params, json=body)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            self._mark_down()
            raise UpstreamError("unavailable", f"{method} {path}: {type(exc).__name__}") from None
        except httpx.TransportError as exc:  # sent, but no answer: a write may have happened
            self._mark_down()
            raise UpstreamError(
                "unavailable", f"{method} {path}: {type(exc).__name__}", applied_unknown=True
            ) from None
        self._down_until = 0.0
        if response.status_code == 200:
            try:
                data = response.json()
            except ValueError:
                raise UpstreamError("failed", f"{method} {path}: answer is not JSON", status=200) from None
            return data if isinstance(data, dict) else {}
        raise self._error(method, path, response)

    @staticmethod
    def _error(method: str, path: str, response: httpx.Response) -> UpstreamError:
        code = ""
        with contextlib.suppress(ValueError, AttributeError):
            code = str(response.json().get("error_code", ""))
        status = response.status_code
        kind = _KIND_BY_CODE.get(code) or (
            "not_found" if status == 404 else "invalid" if 400 <= status < 500 else "unavailable"
        )
        detail = f"{method} {path}: HTTP {status} {code}".strip()
        return UpstreamError(kind, detail, status=status, applied_unknown=status >= 500)

    # ---- registered models -----------------------------------------------------------------------
    async def get_model(self, name: str) -> dict[str, Any]:
        data = await self._call("GET", "/registered-models/get", params={"name": name})
        return dict(data.get("registered_model", {}))

    async def search_models(self, *, max_results: int, page_token: str, name_contains: str) -> dict[str, Any]:
        params: dict[str, Any] = {"max_results": max_results, "order_by": "name ASC"}
        if page_token:
            params["page_token"] = page_token
        if name_contains:
            escaped = name_contains.replace("'", "\\'")
            params["filter"] = f"name ILIKE '%{escaped}%'"
        return await self._call("GET", "/registered-models/search", params=params)

    async def create_model(self, name: str) -> None:
        await self._call("POST", "/registered-models/create", body={"name": name})

    # ---- versions --------------------------------------------------------------------------------
    async def get_version(self, name: str, version: int) -> dict[str, Any]:
        data = await self._call("GET", "/model-versions/get", params={"name": name, "version": str(version)})
        return dict(data.get("model_version", {}))

    async def get_version_by_alias(self, name: str, alias: str) -> dict[str, Any]:
        data = await self._call("GET", "/registered-models/alias", params={"name": name, "alias": alias})
        return dict(data.get("model_version", {}))

    async def search_versions(self, name: str, *, filter_extra: str = "") -> list[dict[str, Any]]:
        """Every version of `name` (paging through MLflow), newest first."""
        escaped = name.replace("'", "\\'")
        query = f"name='{escaped}'" + (f" and {filter_extra}" if filter_extra else "")
        versions: list[dict[str, Any]] = []
        token = ""
        while True:
            params: dict[str, Any] = {"filter": query, "max_results": SEARCH_PAGE, "order_by": "version_number DESC"}
            if token:
                params["page_token"] = token
            data = await self._call("GET", "/model-versions/search", params=params)
            versions.extend(data.get("model_versions", []))
            token = str(data.get("next_page_token", ""))
            if not token:
                return versions

    async def create_version(
        self, *, name: str, source: str, run_id: str, tags: dict[str, str], description: str, model_id: str
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": name,
            "source": source,
            "run_id": run_id,
            "tags": [{"key": k, "value": v} for k, v in tags.items()],
            "description": description,
        }
        if model_id:
            body["model_id"] = model_id
        data = await self._call("POST", "/model-versions/create", body=body)
        return dict(data.get("model_version", {}))

    async def set_version_tag(self, name: str, version: int, key: str, value: str) -> None:
        await self._call(
            "POST", "/model-versions/set-tag", body={"name": name, "version": str(version), "key": key, "value": value}
        )

    async def get_download_uri(self, name: str, version: int) -> str:
        params = {"name": name, "version": str(version)}
        data = await self._call("GET", "/model-versions/get-download-uri", params=params)
        return str(data.get("artifact_uri", ""))

    # ---- aliases ---------------------------------------------------------------------------------
    async def set_alias(self, name: str, alias: str, version: int) -> None:
        body = {"name": name, "alias": alias, "version": str(version)}
        await self._call("POST", "/registered-models/alias", body=body)

    async def delete_alias(self, name: str, alias: str) -> None:
        await self._call("DELETE", "/registered-models/alias", body={"name": name, "alias": alias})

    # ---- runs and logged models ------------------------------------------------------------------
    async def get_run(self, run_id: str) -> dict[str, Any]:
        data = await self._call("GET", "/runs/get", params={"run_id": run_id})
        return dict(data.get("run", {}))

    async def get_logged_model(self, model_id: str) -> dict[str, Any]:
        data = await self._call("GET", f"/logged-models/{quote(model_id, safe='')}")
        return dict(data.get("model", {}))

    async def logged_models_of_run(self, *, experiment_id: str, run_id: str) -> list[dict[str, Any]]:
        data = await self._call(
            "POST", "/logged-models/search",
            body={"experiment_ids": [experiment_id], "filter": f"source_run_id = '{run_id}'", "max_results": 50},
        )
        return list(data.get("models", []))

    # ---- artifacts (MLflow's artifact proxy: mlflow-artifacts:/ URIs) -----------------------------
    @staticmethod
    def artifact_path(uri: str) -> str:
        """The proxy path of an `mlflow-artifacts:` URI; raises UpstreamError("invalid") for other schemes."""
        parts = urlsplit(uri)
        if parts.scheme != "mlflow-artifacts":
            raise UpstreamError("invalid", f"artifact URI scheme {parts.scheme!r} is not served by MLflow's proxy")
        return parts.path.strip("/")

    async def list_artifacts(self, root: str) -> list[dict[str, Any]]:
        """Files directly in folder `root` (a proxy path): [{path, is_dir, file_size}] with paths relative to it."""
        data = await self._call("GET", "", params={"path": root}, prefix=ARTIFACTS_API)
        return list(data.get("files", []))

    async def stream_artifact(self, path: str, *, chunk_size: int = 64 * 1024) -> AsyncIterator[bytes]:
        """The bytes of one artifact file (a proxy path), in chunks; raises UpstreamError."""
        url = f"{ARTIFACTS_API}/{quote(path)}"
        timeout = httpx.Timeout(self.timeout, read=self.artifact_timeout)
        try:
            async with self._client.stream("GET", url, timeout=timeout) as response:
                if response.status_code != 200:
                    await response.aread()
                    raise self._error("GET", "artifact", response)
                async for chunk in response.aiter_bytes(chunk_size):
                    yield chunk
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            self._mark_down()
            raise UpstreamError("unavailable", f"artifact: {type(exc).__name__}") from None
        except httpx.TransportError as exc:
            raise UpstreamError("unavailable", f"artifact: {type(exc).__name__}") from None
