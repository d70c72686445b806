"""Readiness: named checks that must all pass before a service takes traffic.

Both transports read the same `Readiness`: `/readyz` evaluates it, and the gRPC bootstrap mirrors it into
the standard health service. Liveness is separate and only says that the process answers.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

Check = Callable[[], bool | Awaitable[bool]]

# Bound on one check, so a hanging dependency makes the service unready instead of hanging the probe.
CHECK_TIMEOUT_SECONDS = 2.0


class Readiness:
    def __init__(self) -> None:
        self._checks: dict[str, Check] = {}
        self._draining = False
        self.last: dict[str, str] = {}

    def add(self, name: str, check: Check) -> None:
        """Register a check; it returns True when ready (False or an exception means not ready)."""
        self._checks[name] = check

    def drain(self) -> None:
        """Mark the service as shutting down: unready from now on, whatever the checks say."""
        self._draining = True

    @property
    def draining(self) -> bool:
        return self._draining

    async def _run(self, check: Check) -> str:
        try:
            result = check()
            if inspect.isawaitable(result):
                result = await asyncio.wait_for(result, CHECK_TIMEOUT_SECONDS)
            return "ok" if result else "not ready"
        except TimeoutError:
            return f"timed out after {CHECK_TIMEOUT_SECONDS}s"
        except Exception as exc:  # a failing check is a state to report, not an error to raise
            return f"error: {exc}"

    async def evaluate(self) -> tuple[bool, dict[str, str]]:
        """(ready, {check name: "ok" or why not})."""
        names = list(self._checks)
        outcomes = await asyncio.gather(*(self._run(self._checks[n]) for n in names))
        results = dict(zip(names, outcomes, strict=True))
        if self._draining:
            results["shutdown"] = "draining"
        self.last = results
        return all(v == "ok" for v in results.values()), results
