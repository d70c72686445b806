"""Settings fail at boot with one clear message naming every bad variable, and never echo values."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from loopline_common.settings import ServiceSettings, SettingsError, load_settings
from tests.helpers import REPO


class DemoSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LOOPLINE_DEMO_", extra="ignore", frozen=True)

    mlflow_uri: str = Field(description="required")
    token: SecretStr = Field(min_length=8)


def test_settings_come_from_the_prefixed_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOPLINE_DEMO_HTTP_PORT", "8000")
    monkeypatch.setenv("LOOPLINE_DEMO_GRPC_PORT", "9000")
    monkeypatch.setenv("LOOPLINE_DEMO_MLFLOW_URI", "http://127.0.0.1:5000")
    monkeypatch.setenv("LOOPLINE_DEMO_TOKEN", "s3cret-value")
    settings = load_settings(DemoSettings)
    assert (settings.http_port, settings.grpc_port, settings.host) == (8000, 9000, "127.0.0.1")
    assert settings.token.get_secret_value() == "s3cret-value"
    assert "s3cret" not in repr(settings)


def test_missing_and_invalid_settings_name_each_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PORT", "GRPC_PORT", "MLFLOW_URI", "TOKEN"):
        monkeypatch.delenv(f"LOOPLINE_DEMO_{name}", raising=False)
    monkeypatch.setenv("LOOPLINE_DEMO_HTTP_PORT", "99999")
    monkeypatch.setenv("LOOPLINE_DEMO_TOKEN", "short")
    with pytest.raises(SettingsError) as info:
        load_settings(DemoSettings)
    message = str(info.value)
    assert "LOOPLINE_DEMO_GRPC_PORT is required but not set" in message
    assert "LOOPLINE_DEMO_MLFLOW_URI is required but not set" in message
    assert "LOOPLINE_DEMO_HTTP_PORT: Input should be less than or equal to 65535" in message
    assert "LOOPLINE_DEMO_TOKEN:" in message
    assert "short" not in message  # values are never echoed: they may be secrets


def test_a_service_with_missing_settings_exits_2_with_the_message() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tests.common.probe_service"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "LOOPLINE_PROBE_HTTP_PORT": "0"},
    )
    assert result.returncode == 2
    assert "LOOPLINE_PROBE_GRPC_PORT is required but not set" in result.stderr
    assert "LOOPLINE_PROBE_READY_FILE is required but not set" in result.stderr
    assert "Traceback" not in result.stderr
