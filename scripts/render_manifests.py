"""Render manifests/ from the chart: plain YAML for kubectl users (`make manifests`).

tests/deploy checks that the committed files equal this output, so the chart stays the one source.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHART = REPO / "charts" / "loopline"
HELM = shutil.which("helm") or str(Path(sys.executable).parent / "helm")
# file -> extra `helm template` arguments. Release `loopline` in namespace `loopline`, helm tests left out.
TARGETS: dict[str, list[str]] = {
    "loopline.yaml": [],
    "loopline-serverless.yaml": [
        "--set", "inference.deploymentMode=Serverless", "--set", "inference.canary.router=none",
    ],
}
HEADER = (
    "# Rendered from charts/loopline by `make manifests` (scripts/render_manifests.py); do not edit by hand.\n"
    "# helm template loopline charts/loopline --namespace loopline --skip-tests {args}\n"
    "# Apply with: kubectl apply -n loopline -f manifests/{name}  (prerequisites first: manifests/prerequisites)\n"
)


def render_all() -> dict[Path, str]:
    """{path under manifests/: its text} for every rendered file."""
    out: dict[Path, str] = {}
    for name, args in TARGETS.items():
        result = subprocess.run(
            [HELM, "template", "loopline", str(CHART), "--namespace", "loopline", "--skip-tests", *args],
            capture_output=True, text=True, timeout=120, check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"helm template failed for {name}:\n{result.stderr}")
        out[REPO / "manifests" / name] = HEADER.format(args=" ".join(args), name=name) + result.stdout
    return out


def main() -> int:
    for path, text in render_all().items():
        path.write_text(text)
        print(f"wrote {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
