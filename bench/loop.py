"""The closed loop's reaction times: drift injection -> v2 promoted, and bad challenger -> rolled back.

Run it with `make bench-loop` (i.e. `.venv/bin/python bench/loop.py [--profiles short,default]`). Each
profile runs the whole demo scenario once (`loopline_cli.scenario`, the same code as `loopline demo`) on a
fresh embedded stack with its own ports, then writes bench/results/loop.json and prints a table.

What each figure is compared with ("peer") is the least time the profile's own settings allow, so the
ratio says how much the platform adds on top of what its policies demand:

  - drift -> v2 promoted: the drifted window must close (window_seconds + the 2 s lateness grace), the
    retrain must run (the budget is the v1 job's own duration in the same run: same data size, same
    family), then the canary must pass every step (steps x interval) and one more analysis before the
    promotion. Goal: <= 2x that bound.
  - bad challenger -> rolled back: `threshold` failed analyses one interval apart, after the challenger is
    loaded (the load is not in the bound: it is what the ratio shows). Goal: <= 3x that bound.
  - bad challenger registered -> rolled back: the same, but counted from the registration (the scenario
    makes the version challenger only after v2's canary ended, so this includes waiting for that).
    Reported, no goal.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "loop.json"
sys.path.insert(0, str(REPO))  # tests.helpers: free ports


def _port_offset() -> int:
    """A free port offset for this run's stack (fixed offsets landed in the ephemeral range)."""
    from tests.helpers import stack_port_offset

    return stack_port_offset(low=25000, span=3000)


def _job_seconds(scenario: Any, trigger: str) -> float:
    """Wall time of the first training job with `trigger` in the run (from its timeline events)."""
    running = next((e for e in scenario.timeline.events if e.kind == "training.running"
                    and (e.data.get("trigger") or "manual") == trigger), None)
    done = next((e for e in scenario.timeline.events if e.kind == "training.succeeded"
                 and (e.data.get("trigger") or "manual") == trigger), None)
    return done.at - running.at if running and done else float("nan")


def run_profile(name: str) -> tuple[list[dict[str, Any]], bool]:
    from loopline_cli.scenario import PROFILES, Scenario

    profile = PROFILES[name]
    base = Path(tempfile.mkdtemp(prefix=f"bench-loop-{name}-"))
    scenario = Scenario(profile=profile, home=base / "demo", port_offset=_port_offset(), reports=base / "reports",
                        echo=lambda line: print(f"  [{name}] {line}", flush=True))
    try:
        result = scenario.run()
    finally:
        scenario.close()
    figures = result.figures()
    training_budget = _job_seconds(scenario, "manual")
    detect = profile.window_seconds + 2.0
    promote_bound = detect + training_budget + profile.rollout_bound()
    rollback_bound = profile.rollback_bound()
    rows = []
    ours = figures.get("drift_to_promoted", float("nan"))
    rows.append({
        "name": f"{name}: drift injected -> v2 promoted (s)",
        "ours": round(ours, 1), "peer": round(promote_bound, 1), "ratio": round(ours / promote_bound, 2),
        "goal": f"<= 2x the bound (window {profile.window_seconds:g}s + 2s + training {training_budget:.0f}s + "
                f"{len(profile.steps)} steps x {profile.interval_seconds:g}s + 1 analysis)",
        "met": ours <= 2 * promote_bound,
    })
    ours = figures.get("bad_to_rolled_back", float("nan"))
    rows.append({
        "name": f"{name}: bad challenger -> rolled back (s)",
        "ours": round(ours, 1), "peer": round(rollback_bound, 1), "ratio": round(ours / rollback_bound, 2),
        "goal": f"<= 3x the bound ({profile.failure_threshold} failed analyses x {profile.interval_seconds:g}s)",
        "met": ours <= 3 * rollback_bound,
    })
    ours = figures.get("bad_registered_to_rolled_back", float("nan"))
    rows.append({
        "name": f"{name}: bad challenger registered -> rolled back (s)",
        "ours": round(ours, 1), "peer": round(rollback_bound, 1), "ratio": round(ours / rollback_bound, 2),
        "goal": "reported (includes waiting for v2's canary to end)", "met": ours == ours,
    })
    rows.append({
        "name": f"{name}: whole scenario, every outcome (s)",
        "ours": round(max(e.at for e in result.timeline) - scenario.timeline.started, 1),
        "peer": 360.0 if name == "short" else 1800.0,
        "ratio": round((max(e.at for e in result.timeline) - scenario.timeline.started)
                       / (360.0 if name == "short" else 1800.0), 2),
        "goal": "every outcome, within 6 min (short) / 30 min (default)",
        "met": result.ok and (max(e.at for e in result.timeline) - scenario.timeline.started)
        <= (360.0 if name == "short" else 1800.0),
    })
    print(f"  [{name}] report: {result.report}; ok={result.ok} {result.error}")
    return rows, result.ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", default="short,default", help="comma-separated: short, default")
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    for name in args.profiles.split(","):
        print(f"running the {name} profile ...", flush=True)
        figures, _ = run_profile(name.strip())
        rows.extend(figures)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(rows, indent=2) + "\n")
    print()
    print(f"{'figure':<58} {'ours':>8} {'peer':>8} {'ratio':>6}  {'goal':<60} met")
    for f in rows:
        print(f"{f['name']:<58} {f['ours']:>8} {f['peer']:>8} {f['ratio']:>6}  {f['goal'][:60]:<60} {f['met']}")
    print(f"\nwrote {RESULTS}")
    sys.exit(0)


if __name__ == "__main__":
    main()
