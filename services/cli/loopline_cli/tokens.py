"""The embedded stack's registry tokens: a secret file in the stack's home, made on the first `up`.

`loopline up` gives the registry `<home>/secrets/registry-tokens.json` (mode 0600) holding one random
token per role; the CLI and the stack's other services use them when no token is given explicitly.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

ROLES = ("reader", "trainer", "releaser", "admin")


def tokens_path(home: Path) -> Path:
    return home / "secrets" / "registry-tokens.json"


def ensure_local_tokens(home: Path) -> Path:
    """The stack's token file, created with a fresh token per role if it does not exist yet."""
    path = tokens_path(home)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        entries = [{"name": f"local-{role}", "role": role, "token": secrets.token_urlsafe(32)} for role in ROLES]
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as out:
            json.dump(entries, out, indent=2)
    return path


def local_token(home: Path, role: str = "admin") -> str | None:
    """The stack's token for `role`, or None when the stack has no token file."""
    try:
        entries = json.loads(tokens_path(home).read_text())
    except (OSError, ValueError):
        return None
    return next((str(e["token"]) for e in entries if isinstance(e, dict) and e.get("role") == role), None)
