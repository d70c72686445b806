"""Loopline's model registry: a proxy over MLflow (whose aliases are the source of truth) that adds a
stage view, promotion policy, lineage, an audit log, auth, a cache and exactly-once model events.

Layers: `api` (transport-neutral calls with auth) over `core` (keyword-only service functions) over the
adapters `mlflow_rest` (MLflow's REST API), `store` (audit log and outbox in SQLite or Postgres) and
`relay` (the outbox publisher). `grpc_api` and `http_api` only translate. Nothing here touches disk or
network at import time.
"""
