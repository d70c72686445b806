"""The version of the training code recorded in each model's lineage."""

from __future__ import annotations

import subprocess
from pathlib import Path

from loopline_training import __version__


def code_version(configured: str = "") -> str:
    """`configured` if set (an image sets it at build time), else the package version and, in a git
    checkout, the commit (with "+dirty" when the working tree has changes)."""
    if configured:
        return configured
    version = f"loopline-training {__version__}"
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5, check=True,  # noqa: S607
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", str(here)], cwd=here,  # noqa: S607
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return version
    return f"{version} git {commit}{'+dirty' if dirty else ''}" if commit else version
