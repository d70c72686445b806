"""Settings: pydantic-settings models read from `LOOPLINE_<SERVICE>_*` environment variables.

A service subclasses `ServiceSettings`, sets its env prefix, and builds the settings in `main()` with
`load_settings`, which turns a validation failure into one clear message naming each environment
variable that is missing or wrong. Required settings have no default.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

T = TypeVar("T", bound=BaseSettings)


class SettingsError(Exception):
    """Raised when settings cannot be built; the message lists every bad variable."""


class ServiceSettings(BaseSettings):
    """What every Loopline service server needs. Subclasses set `env_prefix="LOOPLINE_<SERVICE>_"`."""

    model_config = SettingsConfigDict(env_prefix="LOOPLINE_", extra="ignore", frozen=True)

    host: str = Field("127.0.0.1", description="Address to bind; 0.0.0.0 only inside a container")
    http_port: int = Field(ge=0, le=65535, description="HTTP/JSON port (0 picks a free one)")
    grpc_port: int = Field(ge=0, le=65535, description="gRPC port (0 picks a free one)")
    log_level: str = Field("INFO", description="Root log level")
    max_request_bytes: int = Field(4 * 1024 * 1024, gt=0, description="Largest accepted request body")
    shutdown_grace_seconds: float = Field(10.0, ge=0, description="Drain time on SIGTERM")
    readiness_interval_seconds: float = Field(2.0, gt=0, description="How often readiness is re-checked")


def env_name(cls: type[BaseSettings], field: str) -> str:
    prefix = str(cls.model_config.get("env_prefix", ""))
    return f"{prefix}{field}".upper()


def load_settings(cls: type[T], **overrides: Any) -> T:
    """Build `cls` from the environment (and `overrides`), or raise SettingsError naming the variables."""
    try:
        return cls(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = ".".join(str(part) for part in err["loc"]) or "?"
            name = env_name(cls, field) if err["loc"] else cls.__name__
            if err["type"] == "missing":
                problems.append(f"{name} is required but not set")
            else:
                # The value itself is never echoed: it may be a secret.
                problems.append(f"{name}: {err['msg']}")
        raise SettingsError(f"invalid settings for {cls.__name__}:\n  " + "\n  ".join(problems)) from None
