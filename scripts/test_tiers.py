"""Run the pytest tiers of `make test` and lint, two lanes at a time, and fail if any tier fails.

Each tier runs in the environment its code needs (.venv, or .venvs/<service> for services whose lock says
`# own-venv`). Most of a tier's time is spent waiting for processes it started (brokers, MLflow, services)
to come up, so two lanes keep both cores busy without starving either. Each tier's output goes to
`.pytest-tiers/<tier>.log` and is printed whole when the tier fails, and in short when it passes.

    python scripts/test_tiers.py [--lanes N] [--no-lint] [-- extra pytest args]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LOGS = REPO / ".pytest-tiers"


@dataclass
class Tier:
    name: str
    python: str
    paths: list[str]
    ignore: list[str] = field(default_factory=list)
    command: list[str] | None = None  # a tier that is not pytest (lint)
    code: int | None = None
    seconds: float = 0.0


def own_venvs() -> list[str]:
    names = []
    for lock in sorted((REPO / "services").glob("*/requirements.lock")):
        if lock.read_text().startswith("# own-venv"):
            names.append(lock.parent.name)
    return names


def tiers(*, lint: bool = True) -> list[list[Tier]]:
    """Lanes of tiers; a lane runs its tiers one after another. The lanes are balanced by measured time:
    one lane runs most of .venv's tests (about 15 min here); the other the slow end-to-end loop, the
    own-environment tiers, the rollout controller's tests and lint (ruff, mypy, buf)."""
    dev = str(REPO / ".venv" / "bin" / "python")
    own = own_venvs()
    moved = [d for d in ("loop", "rollout") if (REPO / "tests" / d).is_dir()]
    main = Tier("main", dev, ["tests"], ignore=[f"tests/{name}" for name in [*own, *moved]])
    others = [Tier(name, str(REPO / ".venvs" / name / "bin" / "python"), [f"tests/{name}"]) for name in own]
    second: list[Tier] = []
    if "loop" in moved:
        second.append(Tier("loop", dev, ["tests/loop"]))
    second += others
    if "rollout" in moved:
        second.append(Tier("rollout", dev, ["tests/rollout"]))
    if lint:
        second.append(Tier("lint", dev, [], command=["make", "--no-print-directory", "lint"]))
    return [[main], second]


def run_lane(lane: list[Tier], extra: list[str], lock: threading.Lock) -> None:
    for tier in lane:
        log = LOGS / f"{tier.name}.log"
        if tier.command is not None:
            argv = tier.command
        else:
            argv = [tier.python, "-m", "pytest", *tier.paths, *(f"--ignore={p}" for p in tier.ignore), *extra]
        with lock:
            print(f"[{tier.name}] {' '.join(argv[1:])}  (log: {log.relative_to(REPO)})", flush=True)
        started = time.monotonic()
        with log.open("w") as out:
            tier.code = subprocess.call(argv, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=os.environ)
        tier.seconds = time.monotonic() - started
        text = log.read_text(errors="replace")
        with lock:
            if tier.code == 0:
                summary = [line for line in text.splitlines() if line.strip()][-1:]
                print(f"[{tier.name}] passed in {tier.seconds:.0f} s: {' '.join(summary)}", flush=True)
            else:
                print(f"[{tier.name}] FAILED (exit {tier.code}) in {tier.seconds:.0f} s; its output:", flush=True)
                print(text, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lanes", type=int, default=2, help="how many lanes run at once (1: one tier at a time)")
    parser.add_argument("--no-lint", action="store_true", help="leave out the lint tier")
    args, extra = parser.parse_known_args()
    extra = [a for a in extra if a != "--"]
    LOGS.mkdir(exist_ok=True)
    lanes = tiers(lint=not args.no_lint)
    if args.lanes <= 1:
        lanes = [[tier for lane in lanes for tier in lane]]
    lock = threading.Lock()
    threads = [threading.Thread(target=run_lane, args=(lane, extra, lock)) for lane in lanes]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    all_tiers = [tier for lane in lanes for tier in lane]
    failed = [tier.name for tier in all_tiers if tier.code != 0]
    print(f"tiers: {', '.join(f'{t.name} {t.seconds:.0f} s' for t in all_tiers)}; "
          f"wall {time.monotonic() - started:.0f} s", flush=True)
    if failed:
        print(f"FAILED tiers: {', '.join(failed)}", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
