"""`loopline models ...` against the real registry, as a user runs it."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner, Result
from loopline_registry.auth import Role

from loopline_cli.main import cli
from tests.helpers import REPO
from tests.registry.clients import RegistryProcess
from tests.registry.conftest import token
from tests.registry.seed import make_run, unique

LOOPLINE = str(Path(sys.executable).parent / "loopline")


def _run(registry: RegistryProcess, *args: str, role: Role = Role.ADMIN) -> Result:
    """The command, in this process (click's runner) for speed; the console script is run once below."""
    command, rest = args[0], args[1:]
    return CliRunner().invoke(
        cli, ["models", command, "--registry", f"127.0.0.1:{registry.grpc_port}", "--token", token(role), *rest]
    )


def _json(registry: RegistryProcess, *args: str, role: Role = Role.ADMIN) -> dict:  # type: ignore[type-arg]
    result = _run(registry, *args, "--json", role=role)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_the_models_commands(registry: RegistryProcess, mlflow_server: str, tmp_path: Path) -> None:
    from loopline.registry.v1 import registry_pb2 as pb

    model = unique()
    seeded = make_run(mlflow_server, metrics={"roc_auc": 0.9})
    for _ in range(3):
        registry.grpc.call("RegisterVersion", pb.RegisterVersionRequest(model_name=model, run_id=seeded.run_id),
                           token(Role.TRAINER))

    listed = _run(registry, "list", "--contains", model)
    assert listed.exit_code == 0 and model in listed.stdout
    script = subprocess.run(  # the installed console script, as a user runs it
        [LOOPLINE, "models", "get", model, "--registry", f"127.0.0.1:{registry.grpc_port}", "--json",
         "--token", token(Role.READER)], capture_output=True, text=True, timeout=60, cwd=REPO,
    )
    assert script.returncode == 0, script.stderr
    assert json.loads(script.stdout)["model"]["latest_version"] == "3"
    version = _json(registry, "get", model, "1")["version"]
    assert version["metrics"] == {"roc_auc": 0.9} and version["model_sha256"] == seeded.model_sha256
    assert [v["version"] for v in _json(registry, "versions", model)["versions"]] == ["3", "2", "1"]

    assert "-> v1" in _run(registry, "alias", model, "challenger", "1", "--reason", "cli").stdout
    assert _json(registry, "alias", model, "challenger")["version"] == "1"
    dry = _run(registry, "promote", model, "--dry-run")
    assert dry.exit_code == 0 and "would pass" in dry.stdout and "[pass] not_archived" in dry.stdout
    assert "champion v- -> v1" in _run(registry, "promote", model, "--reason", "first").stdout
    assert _json(registry, "promote", model, "2")["champion"] == "2"
    assert "champion v2 -> v1" in _run(registry, "rollback", model, "--reason", "oops").stdout
    assert "None -> Staging" in _run(registry, "stage", model, "3", "staging").stdout
    assert "archived" in _run(registry, "archive", model, "2").stdout
    assert _json(registry, "alias", model, "challenger", "--delete")["changed"] is True

    entries = _json(registry, "audit", "--model", model, "--limit", "100")["entries"]
    assert {e["action"] for e in entries} >= {"set_alias", "promote", "rollback", "transition_stage", "archive"}
    audit_text = _run(registry, "audit", "--model", model, "--actor", "admin-bot")
    assert audit_text.exit_code == 0 and "rollback" in audit_text.stdout and "(oops)" in audit_text.stdout
    lineage = _run(registry, "lineage", model, "1")
    assert lineage.exit_code == 0 and seeded.run_id in lineage.stdout and "@champion" in lineage.stdout

    out = tmp_path / "model.onnx"
    fetched = _run(registry, "download", model, "1", "-o", str(out))
    assert fetched.exit_code == 0, fetched.stderr
    assert hashlib.sha256(out.read_bytes()).hexdigest() == seeded.model_sha256

    # Errors: a clear message on stderr and exit status 1.
    refused = _run(registry, "stage", model, "2", "production")
    assert refused.exit_code == 1
    assert "FAILED_PRECONDITION" in refused.stderr and "Archived is final" in refused.stderr
    denied = _run(registry, "rollback", model, role=Role.READER)
    assert denied.exit_code == 1 and "PERMISSION_DENIED" in denied.stderr
    missing = _run(registry, "get", f"{model}-nope")
    assert missing.exit_code == 1 and "NOT_FOUND" in missing.stderr
