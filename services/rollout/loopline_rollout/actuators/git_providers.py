"""Where a GitOps repository lives: a plain git remote (any URL or path git can push to), GitHub's REST API
or GitLab's REST API. Each provider makes a branch from the base branch, reads and commits one file on it,
and opens or updates the pull (merge) request that carries the evidence. Plain git has no pull requests:
there the request's text is the message of the branch's newest commit (what `git request-pull` would
mail), so a reviewer reads it with `git log -1 <branch>`.
"""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import httpx

from loopline_common.errors import FailedPrecondition, Unavailable


class GitProvider(Protocol):
    name: str

    async def start_branch(self, branch: str) -> None: ...

    async def read(self, branch: str, path: str) -> str: ...

    async def commit(self, branch: str, path: str, content: str, message: str) -> None: ...

    async def pull_request(self, branch: str, title: str, body: str, state: dict[str, Any]) -> dict[str, Any]:
        """Open the request (when `state` has none) or replace its description; returns {number, url}."""
        ...

    async def close(self) -> None: ...


class PlainGit:
    """A working clone driven with the git CLI; pushes each commit to `remote`."""

    name = "git"

    def __init__(self, *, remote: str, base: str, work_dir: Path, author: str, timeout: float = 60.0) -> None:
        self.remote = remote
        self.base = base
        self.dir = work_dir
        self.timeout = timeout
        name, _, email = author.partition("<")
        self.env = {
            "GIT_AUTHOR_NAME": name.strip() or "Loopline rollout", "GIT_AUTHOR_EMAIL": email.rstrip(">").strip(),
            "GIT_COMMITTER_NAME": name.strip() or "Loopline rollout",
            "GIT_COMMITTER_EMAIL": email.rstrip(">").strip(), "GIT_TERMINAL_PROMPT": "0",
        }
        self._lock = asyncio.Lock()

    def _git(self, *args: str, cwd: Path | None = None) -> str:
        try:
            done = subprocess.run(
                ["git", *args], cwd=cwd or self.dir, env={**os.environ, **self.env},  # noqa: S607
                capture_output=True, text=True,
                timeout=self.timeout, check=False,
            )
        except subprocess.TimeoutExpired:
            raise Unavailable(f"git {args[0]} timed out after {self.timeout:.0f}s") from None
        if done.returncode != 0:
            raise Unavailable(f"git {args[0]} failed: {(done.stderr or done.stdout).strip()[-300:]}")
        return done.stdout

    def _sync(self) -> None:
        if not (self.dir / ".git").exists():
            self.dir.parent.mkdir(parents=True, exist_ok=True)
            self._git("clone", "--quiet", self.remote, str(self.dir), cwd=self.dir.parent)
        self._git("fetch", "--quiet", "--prune", "origin")

    def _remote_branches(self) -> set[str]:
        out = self._git("branch", "-r", "--format=%(refname:short)")
        return {line.strip().removeprefix("origin/") for line in out.splitlines() if line.strip()}

    def _start(self, branch: str) -> None:
        self._sync()
        source = branch if branch in self._remote_branches() else self.base
        self._git("checkout", "--quiet", "-B", branch, f"origin/{source}")

    async def start_branch(self, branch: str) -> None:
        async with self._lock:
            await asyncio.to_thread(self._start, branch)

    async def read(self, branch: str, path: str) -> str:
        async with self._lock:
            await asyncio.to_thread(self._start, branch)
            file = self.dir / path
            if not file.is_file():
                raise FailedPrecondition(f"{path} does not exist on {branch} of {self.remote}")
            return file.read_text()

    def _commit(self, branch: str, path: str, content: str, message: str) -> None:
        self._start(branch)
        (self.dir / path).write_text(content)
        self._git("add", "--", path)
        done = subprocess.run(["git", "commit", "--quiet", "--allow-empty", "-F", "-"],  # noqa: S607
                              cwd=self.dir, input=message,
                              env={**os.environ, **self.env}, capture_output=True, text=True, timeout=self.timeout,
                              check=False)
        if done.returncode != 0:
            raise Unavailable(f"git commit failed: {(done.stderr or done.stdout).strip()[-300:]}")
        self._git("push", "--quiet", "origin", f"HEAD:refs/heads/{branch}")

    async def commit(self, branch: str, path: str, content: str, message: str) -> None:
        async with self._lock:
            await asyncio.to_thread(self._commit, branch, path, content, message)

    async def pull_request(self, branch: str, title: str, body: str, state: dict[str, Any]) -> dict[str, Any]:
        return {"number": 0, "url": f"{self.remote}#{branch}"}

    async def close(self) -> None:
        return None


class _Rest:
    def __init__(self, *, base_url: str, headers: dict[str, str], timeout: float,
                 transport: httpx.AsyncBaseTransport | None) -> None:
        self.http = httpx.AsyncClient(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout,
                                      transport=transport)

    async def _send(self, method: str, url: str, *, json: Any = None, params: dict[str, str] | None = None,
                    ok: tuple[int, ...] = (200, 201)) -> httpx.Response:
        try:
            response = await self.http.request(method, url, json=json, params=params)
        except httpx.HTTPError as exc:
            raise Unavailable(f"{self.name} API unreachable: {type(exc).__name__}") from None
        if response.status_code not in ok:
            raise Unavailable(f"{self.name} API {method} {url} answered {response.status_code}: "
                              f"{response.text[:300]}")
        return response

    name = "rest"

    async def close(self) -> None:
        await self.http.aclose()


class GitHub(_Rest):
    """GitHub's REST API (api.github.com or an Enterprise server's /api/v3)."""

    name = "github"

    def __init__(self, *, repo: str, base: str, token: str, api_url: str = "", timeout: float = 30.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        super().__init__(
            base_url=api_url or "https://api.github.com",
            headers={"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json",
                     "X-GitHub-Api-Version": "2022-11-28"},
            timeout=timeout, transport=transport,
        )
        self.repo = repo
        self.base = base
        self._sha: dict[tuple[str, str], str] = {}

    async def start_branch(self, branch: str) -> None:
        base = await self._send("GET", f"/repos/{self.repo}/git/ref/heads/{quote(self.base)}")
        sha = base.json()["object"]["sha"]
        # 422: the branch exists already (a restarted rollout); keep it.
        await self._send("POST", f"/repos/{self.repo}/git/refs", json={"ref": f"refs/heads/{branch}", "sha": sha},
                         ok=(201, 422))

    async def read(self, branch: str, path: str) -> str:
        got = await self._send("GET", f"/repos/{self.repo}/contents/{quote(path)}", params={"ref": branch})
        body = got.json()
        self._sha[(branch, path)] = body["sha"]
        return base64.b64decode(body["content"]).decode()

    async def commit(self, branch: str, path: str, content: str, message: str) -> None:
        if (branch, path) not in self._sha:
            await self.read(branch, path)
        done = await self._send("PUT", f"/repos/{self.repo}/contents/{quote(path)}", json={
            "message": message, "content": base64.b64encode(content.encode()).decode(),
            "sha": self._sha[(branch, path)], "branch": branch,
        })
        self._sha[(branch, path)] = done.json()["content"]["sha"]

    async def pull_request(self, branch: str, title: str, body: str, state: dict[str, Any]) -> dict[str, Any]:
        if state.get("number"):
            await self._send("PATCH", f"/repos/{self.repo}/pulls/{state['number']}", json={"body": body})
            return {"number": state["number"], "url": state.get("url", "")}
        made = await self._send("POST", f"/repos/{self.repo}/pulls",
                                json={"title": title, "head": branch, "base": self.base, "body": body})
        pr = made.json()
        return {"number": pr["number"], "url": pr["html_url"]}


class GitLab(_Rest):
    """GitLab's REST API v4 (gitlab.com or a self-managed instance); requests are merge requests."""

    name = "gitlab"

    def __init__(self, *, project: str, base: str, token: str, api_url: str = "", timeout: float = 30.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        super().__init__(base_url=api_url or "https://gitlab.com/api/v4", headers={"PRIVATE-TOKEN": token},
                         timeout=timeout, transport=transport)
        self.project = quote(project, safe="")
        self.base = base

    async def start_branch(self, branch: str) -> None:
        # 400 "Branch already exists": a restarted rollout; keep it.
        await self._send("POST", f"/projects/{self.project}/repository/branches",
                         json={"branch": branch, "ref": self.base}, ok=(201, 400))

    async def read(self, branch: str, path: str) -> str:
        got = await self._send("GET", f"/projects/{self.project}/repository/files/{quote(path, safe='')}/raw",
                               params={"ref": branch})
        return got.text

    async def commit(self, branch: str, path: str, content: str, message: str) -> None:
        await self._send("POST", f"/projects/{self.project}/repository/commits", json={
            "branch": branch, "commit_message": message,
            "actions": [{"action": "update", "file_path": path, "content": content}],
        })

    async def pull_request(self, branch: str, title: str, body: str, state: dict[str, Any]) -> dict[str, Any]:
        if state.get("number"):
            await self._send("PUT", f"/projects/{self.project}/merge_requests/{state['number']}",
                             json={"description": body})
            return {"number": state["number"], "url": state.get("url", "")}
        made = await self._send("POST", f"/projects/{self.project}/merge_requests", json={
            "source_branch": branch, "target_branch": self.base, "title": title, "description": body,
        })
        mr = made.json()
        return {"number": mr["iid"], "url": mr["web_url"]}
