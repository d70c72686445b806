"""How long the rollout controller takes to decide, against the bounds its design promises.

Run it with `make bench-rollout` (i.e. `.venv/bin/python bench/rollout.py`). Writes bench/results/rollout.json
and prints a table.

Set-up, all on 127.0.0.1 and all real: a Kafka-wire broker (noida-db), an MLflow server, the registry, an
inference server following the registry's aliases, monitoring reading the prediction log, and the rollout
controller (embedded actuator, checks from monitoring), with steady traffic to the inference server (80
requests/s of 8 rows). Policy: interval I = 2 s, N = 3 steps (25, 50, 75 %), threshold 2, checks error rate,
p99 latency and prediction PSI against the champion.

Each run registers a challenger and times from the rollout's STARTED decision (the controller saw the new
challenger) to its last decision (both stamped by the controller), so the time includes the challenger
loading into inference:
  - promotion of a good challenger: bound N x I + I (every step needs one interval of analysis, plus slack
    of one interval); goal ratio <= 1;
  - rollback of a degraded challenger (its predictions shifted; the PSI check fails): bound threshold x I + I.
Rows give the median and the worst of RUNS runs each; peer = the bound, ratio = ours / bound, met = ratio <= 1.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")

from loopline_registry.auth import tokens_json  # noqa: E402

from loopline.events.v1 import rollouts_pb2 as ev  # noqa: E402
from loopline.rollout.v1 import rollout_pb2 as pb  # noqa: E402
from tests.helpers import running_broker  # noqa: E402
from tests.registry.conftest import TOKENS  # noqa: E402
from tests.rollout.conftest import build_stack, teardown_stack  # noqa: E402
from tests.rollout.support import running_mlflow  # noqa: E402

RESULTS = REPO / "bench" / "results" / "rollout.json"
INTERVAL = 2.0
STEPS = [25, 50, 75]
THRESHOLD = 2
RUNS = 3
POLICY = {"default": {
    "interval": INTERVAL, "stepWeights": STEPS, "threshold": THRESHOLD, "inconclusiveLimit": 20,
    "metrics": [
        {"name": "error-rate", "thresholdRange": {"max": 0.05}, "minSamples": 50},
        {"name": "latency-p99", "thresholdRange": {"max": 1.0}, "minSamples": 50},
        {"name": "prediction-psi", "thresholdRange": {"max": 0.2}, "minSamples": 150},
    ],
}}


def decided_in(got: pb.GetRolloutResponse) -> float:
    """Seconds from the STARTED decision to the last one."""
    first, last = got.decisions[0], got.decisions[-1]
    if first.decision != ev.DECISION_STARTED:
        raise RuntimeError(f"the first decision is {first.decision}, not STARTED")
    return (last.meta.occurred_at.ToNanoseconds() - first.meta.occurred_at.ToNanoseconds()) / 1e9


def row(name: str, ours: float, bound: float, goal: str) -> dict[str, Any]:
    ratio = ours / bound
    return {"name": name, "ours": round(ours, 3), "peer": bound, "ratio": round(ratio, 3), "goal": goal,
            "met": ratio <= 1.0}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        tokens = folder / "tokens.json"
        tokens.write_text(tokens_json([(name, role, value) for role, (name, value) in TOKENS.items()]))
        (folder / "mlflow").mkdir()
        with running_broker(folder / "kafka") as broker, running_mlflow(folder / "mlflow") as mlflow:
            stack = build_stack(folder / "stack", mlflow=mlflow, broker=broker, tokens=tokens, policy=POLICY,
                                prometheus=False)
            try:
                if stack.traffic is None:
                    raise RuntimeError("the stack has no traffic generator")
                stack.traffic.start()
                promotions, rollbacks = [], []
                for _ in range(RUNS):
                    version = stack.register("good")
                    got = stack.wait_phase({pb.PHASE_PROMOTED}, candidate=version, timeout=120)
                    promotions.append(decided_in(got))
                    print(f"promoted v{version} in {promotions[-1]:.2f}s", flush=True)
                    version = stack.register("degraded")
                    got = stack.wait_phase({pb.PHASE_ROLLED_BACK}, candidate=version, timeout=120)
                    rollbacks.append(decided_in(got))
                    print(f"rolled back v{version} in {rollbacks[-1]:.2f}s", flush=True)
            finally:
                teardown_stack(stack)
    n = len(STEPS)
    promote_bound = n * INTERVAL + INTERVAL
    rollback_bound = THRESHOLD * INTERVAL + INTERVAL
    goal_p = f"promotion within N*I + I = {n}*{INTERVAL:g}s + {INTERVAL:g}s"
    goal_r = f"rollback within threshold*I + I = {THRESHOLD}*{INTERVAL:g}s + {INTERVAL:g}s"
    results = [
        row("promotion seconds, median of runs", statistics.median(promotions), promote_bound, goal_p),
        row("promotion seconds, worst run", max(promotions), promote_bound, goal_p),
        row("rollback seconds, median of runs", statistics.median(rollbacks), rollback_bound, goal_r),
        row("rollback seconds, worst run", max(rollbacks), rollback_bound, goal_r),
    ]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\n{'name':<36} {'ours':>8} {'bound':>8} {'ratio':>7}  met  goal")
    for r in results:
        print(f"{r['name']:<36} {r['ours']:>8.2f} {r['peer']:>8.2f} {r['ratio']:>7.3f}  "
              f"{'yes' if r['met'] else 'NO ':<4} {r['goal']}")
    print(f"\nall runs: promotions {[round(x, 2) for x in promotions]}, rollbacks {[round(x, 2) for x in rollbacks]}")
    print(f"wrote {RESULTS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
