"""The Feast side: load the feature repo's declarations, build the store for one environment, apply.

This module (and those importing it) is where feast enters the process. The declarations in
`feature_repo/` are imported the way `feast apply` does (every .py file not in `.feastignore`), with
the repo folder on sys.path; relative data paths resolve against the data folder, not the repo.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
from pathlib import Path
from typing import Any

from feast import FeatureStore
from feast.repo_config import load_repo_config
from feast.repo_contents import RepoContents
from feast.repo_operations import extract_objects_for_apply_delete, parse_repo

log = logging.getLogger(__name__)

ENVIRONMENTS = ("embedded", "cluster")
_parse_lock = threading.Lock()


def store_config_path(repo_dir: Path, environment: str) -> Path:
    """`feature_store.<environment>.yaml` of the repo."""
    return repo_dir / f"feature_store.{environment}.yaml"


def build_store(*, repo_dir: Path, data_dir: Path, environment: str) -> FeatureStore:
    """A FeatureStore for `environment` whose relative paths (registry, SQLite, parquet) live in `data_dir`."""
    data_dir.mkdir(parents=True, exist_ok=True)
    config = load_repo_config(data_dir, store_config_path(repo_dir, environment))
    return FeatureStore(repo_path=str(data_dir), config=config)


def load_declarations(repo_dir: Path) -> RepoContents:
    """Import the repo's declarations as `feast apply` would (its folder on sys.path and as cwd)."""
    repo = str(repo_dir.resolve())
    with _parse_lock:
        if repo not in sys.path:
            sys.path.insert(0, repo)
        with contextlib.chdir(repo):
            return parse_repo(Path(repo))


def apply(store: FeatureStore, contents: RepoContents) -> dict[str, int]:
    """Register the declarations (and delete registered objects that are gone); create online tables."""
    registry = store.registry
    to_apply, to_delete, _, _ = extract_objects_for_apply_delete(  # type: ignore[no-untyped-call]
        store.project, registry, contents
    )
    store.apply(to_apply, objects_to_delete=to_delete, partial=False)
    counts: dict[str, Any] = {
        "entities": len(contents.entities),
        "feature_views": len(contents.feature_views),
        "on_demand_feature_views": len(contents.on_demand_feature_views),
        "feature_services": len(contents.feature_services),
        "deleted": len(to_delete),
    }
    return counts
