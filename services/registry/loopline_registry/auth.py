"""API tokens with roles, checked on every call over both transports.

Tokens come from a secret file and/or an environment variable, each a JSON (or YAML) list of
`{"name": ..., "role": ..., "token": ...}`. Only their sha256 digests are kept in memory, every digest is
compared with `hmac.compare_digest` (no early exit, so timing does not say which token nearly matched),
and no token is ever logged or echoed in an error.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

import yaml

from loopline_common.errors import PermissionDenied, Unauthenticated

MIN_TOKEN_LENGTH = 16
BEARER = "bearer "


class Role(IntEnum):
    """Roles are ordered: each one may do what the ones below it may."""

    READER = 1
    TRAINER = 2
    RELEASER = 3
    ADMIN = 4

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class Principal:
    """Who is calling: a named token holder with a role, or the anonymous caller (role None)."""

    name: str
    role: Role | None

    @property
    def role_label(self) -> str:
        return self.role.label if self.role is not None else "anonymous"


ANONYMOUS = Principal("anonymous", None)


class TokenConfigError(ValueError):
    """The token file or variable cannot be used; the message never contains a token."""


@dataclass(frozen=True)
class _Entry:
    name: str
    role: Role
    digest: bytes


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def parse_tokens(text: str, *, origin: str) -> list[tuple[str, Role, str]]:
    """(name, role, token) triples from a JSON or YAML list; raises TokenConfigError naming `origin`."""
    try:
        data = yaml.safe_load(text) if text.strip() else []
    except yaml.YAMLError:
        raise TokenConfigError(f"{origin} is not valid JSON or YAML") from None
    if not isinstance(data, list):
        raise TokenConfigError(f"{origin} must be a list of {{name, role, token}} objects")
    triples = []
    for i, item in enumerate(data):
        if not isinstance(item, dict) or not {"name", "role", "token"} <= set(item):
            raise TokenConfigError(f"{origin}[{i}] must have name, role and token")
        name, role, token = str(item["name"]), str(item["role"]).upper(), str(item["token"])
        if role not in Role.__members__:
            raise TokenConfigError(f"{origin}[{i}] ({name}): unknown role; use reader, trainer, releaser or admin")
        if len(token) < MIN_TOKEN_LENGTH:
            raise TokenConfigError(f"{origin}[{i}] ({name}): token shorter than {MIN_TOKEN_LENGTH} characters")
        triples.append((name, Role[role], token))
    return triples


class TokenAuth:
    def __init__(self, tokens: list[tuple[str, Role, str]], *, anonymous_reads: bool) -> None:
        self._entries = [_Entry(name, role, _digest(token)) for name, role, token in tokens]
        self.anonymous_reads = anonymous_reads

    @classmethod
    def load(cls, *, tokens_file: str, tokens_json: str, anonymous_reads: bool) -> TokenAuth:
        tokens: list[tuple[str, Role, str]] = []
        if tokens_file:
            try:
                text = Path(tokens_file).read_text()
            except OSError as exc:
                raise TokenConfigError(f"cannot read the tokens file {tokens_file}: {exc.strerror}") from None
            tokens += parse_tokens(text, origin=f"tokens file {tokens_file}")
        if tokens_json:
            tokens += parse_tokens(tokens_json, origin="LOOPLINE_REGISTRY_TOKENS")
        return cls(tokens, anonymous_reads=anonymous_reads)

    @property
    def token_count(self) -> int:
        return len(self._entries)

    def authenticate(self, authorization: str | None) -> Principal:
        """The caller named by an `Authorization: Bearer <token>` value; ANONYMOUS when there is none.

        Raises Unauthenticated for a malformed header or a token that matches no entry.
        """
        if not authorization:
            return ANONYMOUS
        if not authorization[: len(BEARER)].lower() == BEARER:
            raise Unauthenticated("the authorization header must be 'Bearer <token>'")
        given = _digest(authorization[len(BEARER):].strip())
        found: _Entry | None = None
        for entry in self._entries:  # every entry is compared: no early exit
            if hmac.compare_digest(entry.digest, given):
                found = entry
        if found is None:
            raise Unauthenticated("invalid token")
        return Principal(found.name, found.role)

    def authorize(self, principal: Principal, required: Role, *, method: str) -> None:
        """Raise unless `principal` may call `method`, which needs `required`."""
        if principal.role is None:
            if required == Role.READER and self.anonymous_reads:
                return
            raise Unauthenticated(
                f"{method} needs a token with role {required.label} or higher",
                details={"required_role": required.label},
            )
        if principal.role < required:
            raise PermissionDenied(
                f"{method} needs role {required.label} or higher; {principal.name} has role {principal.role.label}",
                details={"required_role": required.label, "role": principal.role.label},
            )


def tokens_json(tokens: list[tuple[str, Role, str]]) -> str:
    """The JSON form of a token list (for tests and the embedded stack's generated secret)."""
    return json.dumps([{"name": n, "role": r.label, "token": t} for n, r, t in tokens])
