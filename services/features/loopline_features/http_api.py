"""HTTP/JSON mirror of the gRPC API: the same core calls, the same errors.

| route | gRPC method |
|---|---|
| POST /v1/online-features | GetOnlineFeatures |
| POST /v1/historical-features | GetHistoricalFeatures |
| POST /v1/materialize | Materialize |
| GET /v1/feature-services | ListFeatureServices |
| GET /v1/feature-services/{name} | GetFeatureService |

Bodies are parsed with orjson and checked by hand (the online route is the hot path); values are plain
JSON scalars, times RFC 3339 strings, statuses the enum names without prefix (PRESENT, NOT_FOUND,
EXPIRED).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

from loopline_common.errors import InvalidArgument
from loopline_features.backend import FeatureServiceDescription
from loopline_features.core import FeaturesCore
from loopline_features.online import STATUS_NAMES

_SCALARS = (str, int, float, bool)


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = orjson.loads(raw or b"{}")
    except orjson.JSONDecodeError as exc:
        raise InvalidArgument(f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidArgument("request body must be a JSON object")
    return body


def _selection(body: dict[str, Any]) -> tuple[str | None, list[str] | None]:
    service = body.get("feature_service")
    refs = body.get("features")
    if service is not None and refs is not None:
        raise InvalidArgument("give feature_service or features, not both")
    if service is not None:
        if not isinstance(service, str) or not service:
            raise InvalidArgument("feature_service must be a non-empty string")
        return service, None
    if refs is not None:
        if not isinstance(refs, list) or not all(isinstance(r, str) for r in refs):
            raise InvalidArgument("features must be a list of '<view>:<feature>' strings")
        return None, refs
    raise InvalidArgument("name a feature_service or give features")


def _rows(body: dict[str, Any], name: str, *, required: bool) -> list[dict[str, Any]]:
    rows = body.get(name)
    if rows is None and not required:
        return []
    if not isinstance(rows, list):
        raise InvalidArgument(f"{name} must be a list of objects")
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise InvalidArgument(f"{name}[{i}] must be an object")
        for key, value in row.items():
            if value is not None and not isinstance(value, _SCALARS):
                raise InvalidArgument(f"{name}[{i}].{key} must be a string, number or boolean")
    return rows


def _parse_time(value: Any, where: str) -> datetime:
    if not isinstance(value, str):
        raise InvalidArgument(f"{where} must be an RFC 3339 time string")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidArgument(f"{where} is not an RFC 3339 time: {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _optional_time(body: dict[str, Any], name: str) -> datetime | None:
    value = body.get(name)
    return None if value is None else _parse_time(value, name)


def _rfc3339(seconds: float, cache: dict[float, str]) -> str:
    text = cache.get(seconds)
    if text is None:
        text = cache[seconds] = datetime.fromtimestamp(seconds, tz=UTC).isoformat().replace("+00:00", "Z")
    return text


def describe(info: FeatureServiceDescription) -> dict[str, Any]:
    return {
        "name": info.name,
        "description": info.description,
        "tags": info.tags,
        "features": [
            {
                "ref": f.ref, "feature_view": f.feature_view, "name": f.name, "value_type": f.value_type,
                "ttl_seconds": f.ttl_seconds, "join_keys": list(f.join_keys), "on_demand": f.on_demand,
            }
            for f in info.features
        ],
    }


def add_routes(app: FastAPI, core: FeaturesCore) -> None:
    @app.post("/v1/online-features")
    async def online_features(request: Request) -> Response:
        body = await _body(request)
        service, refs = _selection(body)
        entities = _rows(body, "entities", required=True)
        request_data = _rows(body, "request_data", required=False) or None
        result = core.get_online_features(
            feature_service=service, refs=refs, entities=entities, request_data=request_data
        )
        cache: dict[float, str] = {}
        results = [
            {
                "values": values,
                "statuses": [STATUS_NAMES[s] for s in statuses],
                "event_times": [None if t is None else _rfc3339(t, cache) for t in times],
            }
            for values, statuses, times in zip(result.values, result.statuses, result.event_times, strict=True)
        ]
        return _json({"feature_names": result.feature_names, "results": results})

    @app.post("/v1/historical-features")
    async def historical_features(request: Request) -> Response:
        body = await _body(request)
        service, refs = _selection(body)
        raw_rows = body.get("rows") or []
        if not isinstance(raw_rows, list):
            raise InvalidArgument("rows must be a list of {values, event_time} objects")
        rows = []
        for i, row in enumerate(raw_rows):
            if not isinstance(row, dict) or not isinstance(row.get("values"), dict):
                raise InvalidArgument(f"rows[{i}] must be an object with values and event_time")
            rows.append((row["values"], _parse_time(row.get("event_time"), f"rows[{i}].event_time")))
        entity_uri = body.get("entity_uri") or ""
        dataset_name = body.get("dataset_name") or ""
        if not isinstance(entity_uri, str) or not isinstance(dataset_name, str):
            raise InvalidArgument("entity_uri and dataset_name must be strings")
        done = await core.get_historical_features(
            feature_service=service, refs=refs, rows=rows, entity_uri=entity_uri, dataset_name=dataset_name
        )
        return _json(
            {"uri": done.uri, "row_count": done.row_count, "content_sha256": done.content_sha256,
             "columns": done.columns}
        )

    @app.post("/v1/materialize")
    async def materialize(request: Request) -> Response:
        body = await _body(request)
        views = body.get("feature_views") or []
        if not isinstance(views, list) or not all(isinstance(v, str) for v in views):
            raise InvalidArgument("feature_views must be a list of names")
        done = await core.materialize(
            start=_optional_time(body, "start_time"), end=_optional_time(body, "end_time"), feature_views=views
        )
        return _json(
            {
                "feature_views": done.feature_views,
                "start_time": done.start.isoformat() if done.start else None,
                "end_time": done.end.isoformat(),
            }
        )

    @app.get("/v1/feature-services")
    async def list_feature_services() -> Response:
        return _json({"feature_services": [describe(s) for s in core.list_feature_services()]})

    @app.get("/v1/feature-services/{name}")
    async def get_feature_service(name: str) -> Response:
        return _json({"feature_service": describe(core.get_feature_service(name=name))})
