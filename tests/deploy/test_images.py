"""The service images, checked without a Docker engine (none runs here): each Dockerfile's shape
(multi-stage, slim, non-root, only its own service's code and lock, torch from the CPU index), then its
dependency set installed into a clean virtual environment exactly as the Dockerfile installs it (uv, from
its cache), and its entry point started from there until /healthz answers."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from loopline_cli.stack import SERVICES
from tests.helpers import REPO, free_port

UV = str(Path(sys.executable).parent / "uv")
IMAGES = ("registry", "features", "monitoring", "inference", "training", "rollout")
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
# What must never be in an image other than its owner's.
OWNED = {"feast": "features", "torch": "training", "lightgbm": "training", "mlflow-skinny": "training"}


@dataclass
class Dockerfile:
    service: str
    text: str

    @property
    def stages(self) -> list[str]:
        return re.split(r"(?m)^FROM ", self.text)[1:]

    @property
    def final(self) -> str:
        return self.stages[-1]

    def lock(self) -> Path:
        locks: set[str] = set(re.findall(rf"services/{self.service}/requirements[\w.]*\.lock", self.text))
        assert len(locks) == 1, f"{self.service}: expected one lock, found {locks}"
        return REPO / locks.pop()

    def local_packages(self) -> set[str]:
        return set(re.findall(r"\./(protos|services/[\w-]+)", self.text))

    def env(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for block in re.findall(r"(?ms)^ENV (.*?)(?<!\\)$", self.final):
            for key, value in re.findall(r"(\w+)=(\S*)", block.replace("\\\n", " ")):
                out[key] = value
        return out


def _dockerfile(service: str) -> Dockerfile:
    path = REPO / "services" / service / "Dockerfile"
    assert path.exists(), f"services/{service}/Dockerfile is missing"
    return Dockerfile(service, path.read_text())


@pytest.mark.parametrize("service", IMAGES)
def test_dockerfile_is_multistage_slim_nonroot_and_holds_only_its_service(service: str) -> None:
    d = _dockerfile(service)
    assert len(d.stages) >= 2, "multi-stage"
    assert all(stage.split()[0].endswith("-slim") for stage in d.stages), "slim bases"
    user = re.findall(r"(?m)^USER (\S+)", d.final)
    assert user and user[-1].split(":")[0] not in ("0", "root"), "runs as a non-root user"
    assert re.search(rf'ENTRYPOINT \["python", "-m", "loopline_{service}"\]', d.final)
    assert d.local_packages() == {"protos", "services/common", f"services/{service}"}
    copied = set(re.findall(r"(?m)^COPY (?!--from)(\S+)", d.text))
    mine = ("services/common", f"services/{service}")
    others = {c for c in copied if c.startswith("services/") and not c.startswith(mine)}
    assert not others, f"copies another service's code: {others}"
    lock = d.lock().read_text()
    for package, owner in OWNED.items():
        if owner != service:
            assert not re.search(rf"(?m)^{package}==", lock), f"{package} in {service}'s image"
    if re.search(r"(?m)^torch==", lock):
        assert f"--index-url {CPU_INDEX}" in d.text, "torch must come from the CPU index"
        assert re.search(r"(?m)^torch==[\d.]+\+cpu$", lock), "torch pinned to a CPU build"


@pytest.mark.parametrize("service", [s for s in IMAGES if s != "inference"])  # inference: KServe's runtime
def test_dockerfile_ports_are_the_charts(service: str) -> None:
    """The image's default ports (ENV and EXPOSE) are the ones the chart's Deployment and Service use."""
    template = (REPO / "charts" / "loopline" / "templates" / f"{service}.yaml").read_text()
    chart = re.search(rf'"component" "{service}" "httpPort" (\d+) "grpcPort" (\d+)', template)
    assert chart, f"the chart's {service}.yaml names no httpPort/grpcPort"
    d = _dockerfile(service)
    env, prefix = d.env(), f"LOOPLINE_{service.upper()}_"
    assert (env.get(f"{prefix}HTTP_PORT"), env.get(f"{prefix}GRPC_PORT")) == chart.groups()
    exposed = set(re.findall(r"(?m)^EXPOSE (.+)$", d.final)[-1].split())
    assert exposed == set(chart.groups())


# ---- install and start -----------------------------------------------------------------------------
def _run(*args: str, timeout: float = 300) -> None:
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(args)}\n{result.stdout}\n{result.stderr}"


def _install(service: str, root: Path) -> Path:
    """A clean venv with the image's packages, installed as the Dockerfile does (no resolution)."""
    d = _dockerfile(service)
    venv = root / "venv"
    _run(UV, "venv", "-q", "--python", sys.executable, str(venv))
    python = str(venv / "bin" / "python")
    lines = d.lock().read_text().splitlines()
    pins = [line for line in lines if line and not line.startswith(("-e ", "#", " ", "./"))]
    torch = [p for p in pins if p.startswith("torch==")]
    third_party = root / "requirements.txt"
    third_party.write_text("\n".join(p for p in pins if not p.startswith("torch==")) + "\n")
    if torch:
        # The CPU build: from the CPU index in the image; from the machine's wheel folder here.
        links = os.environ.get("PIP_FIND_LINKS", "/opt/wheels")
        _run(UV, "pip", "install", "-q", "--python", python, "--no-deps", "--no-index", "--find-links", links, torch[0])
    _run(UV, "pip", "install", "-q", "--python", python, "--no-deps", "-r", str(third_party))
    # The local packages from a copy (as COPY does), so no build folder lands in the work tree.
    sources = []
    for package in sorted(d.local_packages()):
        target = root / "src" / package
        shutil.copytree(REPO / package, target, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
        sources.append(str(target))
    _run(UV, "pip", "install", "-q", "--python", python, "--no-deps", *sources)
    _run(UV, "pip", "check", "--python", python)
    return venv


@pytest.fixture(scope="module")
def venvs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path | str]:
    """{service: its image venv, or why it could not be built}, built two at a time."""
    root = tmp_path_factory.mktemp("images")

    def build(service: str) -> Path | str:
        try:
            return _install(service, root / service)
        except AssertionError as exc:
            return str(exc)

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(IMAGES, pool.map(build, IMAGES), strict=True))


@pytest.mark.parametrize("service", IMAGES)
def test_image_dependencies_install_cleanly_and_the_entry_point_serves(
    service: str, venvs: dict[str, Path | str], tmp_path: Path
) -> None:
    venv = venvs[service]
    assert isinstance(venv, Path), venv
    installed = subprocess.run(
        [UV, "pip", "list", "--python", str(venv / "bin" / "python"), "--format", "freeze"],
        capture_output=True, text=True, check=True,
    ).stdout.lower()
    for package, owner in OWNED.items():
        if owner != service:
            assert f"\n{package}==" not in "\n" + installed, f"{package} is in {service}'s image"

    spec = next((s for s in SERVICES if s.name == service), None)
    assert spec is not None, f"{service} is not in loopline_cli.stack.SERVICES: no settings to start it with"
    d = _dockerfile(service)
    env = {k: v for k, v in d.env().items() if not k.startswith(("PATH", "PYTHON"))}
    # Container paths of the image become folders here; COPY'd ones point at the repository's copy.
    copies = {
        dst.rstrip("/"): src.rstrip("/") for src, dst in re.findall(r"(?m)^COPY (?!--from)(\S+) (\S+)$", d.final)
    }
    for key, value in list(env.items()):
        if value.startswith("/"):
            local = tmp_path / value.strip("/").replace("/", "_")
            env[key] = str(REPO / copies[value]) if value in copies else str(local)
    prefix = f"LOOPLINE_{service.upper()}_"
    http_port = free_port()
    closed = f"127.0.0.1:{free_port()}"  # nothing listens: dependencies are down, liveness must not care
    addresses = {"kafka": closed, "mlflow": f"http://{closed}", "home": str(tmp_path / "home")}
    env.update(spec.env(addresses))
    env.update({
        f"{prefix}HOST": "127.0.0.1", f"{prefix}HTTP_PORT": str(http_port), f"{prefix}GRPC_PORT": str(free_port()),
    })
    if env.get(f"{prefix}RUNNER") == "kubernetes":
        env[f"{prefix}RUNNER"] = "embedded"  # no Kubernetes API here
    clean = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONNOUSERSITE": "1", **env}
    log = tmp_path / "service.log"
    with open(log, "wb") as out:  # a file, not a pipe: a chatty service must never block on its log
        proc = subprocess.Popen(
            [str(venv / "bin" / "python"), "-m", f"loopline_{service}"], env=clean, cwd=tmp_path,
            stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 240  # feast's import and repo load are slow on a busy machine
        while True:
            assert proc.poll() is None, f"{service} exited:\n{log.read_text(errors='replace')[-3000:]}"
            try:
                if httpx.get(f"http://127.0.0.1:{http_port}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"{service} did not answer /healthz:\n{log.read_text()[-3000:]}"
            time.sleep(0.2)
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
