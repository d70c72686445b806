"""`python -m loopline_features.demo_cli`: write demo history to the offline store, or stream live events.

Run by `loopline demo data` in the features environment (it needs feast to read the repo's streaming
views), or directly:

    python -m loopline_features.demo_cli history --repo-dir feature_repo --data-dir .loopline/features --days 14
    python -m loopline_features.demo_cli stream --bootstrap 127.0.0.1:9092 --rate 20 --seconds 60

`history` writes offline/transactions.parquet (labelled transactions), offline/customer_profile.parquet
and, for every streaming view, its history computed in batch from the same transactions (exactly what
the stream ingester would have pushed). `stream` publishes WorkloadEvents to the raw-events topic at a
fixed rate with event time = now, then flushes and exits.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from loopline_common.kafka_io import EventProducer
from loopline_common.metrics import ServiceMetrics
from loopline_common.topics import WORKLOAD_EVENTS
from loopline_features.aggregates import batch_rows
from loopline_features.demo import DemoConfig, TransactionGenerator, history_window, to_event


def _config(args: argparse.Namespace) -> DemoConfig:
    return DemoConfig(customers=args.customers, merchants=args.merchants, seed=args.seed, drift=args.drift)


def write_history(*, repo_dir: Path, data_dir: Path, environment: str, config: DemoConfig, days: float,
                  now: datetime | None = None) -> dict[str, object]:
    """Generate `days` of history ending now and write it to the offline sources; returns a summary."""
    from loopline_features.backend import FeastBackend

    backend = FeastBackend(
        repo_dir=repo_dir, data_dir=data_dir, environment=environment, max_entities=1, store_timeout_seconds=2.0
    )
    backend.apply()
    generator = TransactionGenerator(config)
    start, end = history_window(days, now=now)
    transactions = generator.history(start, end)
    offline = data_dir / "offline"
    offline.mkdir(parents=True, exist_ok=True)
    _write(transactions, offline / "transactions.parquet")
    _write(generator.profiles(start), offline / "customer_profile.parquet")
    events = transactions.assign(card_not_present=transactions["card_not_present"].astype("float64"))
    rows = {}
    for view in backend.stream_views():
        frame = batch_rows(view, events)
        _write(frame, backend.offline_path(view.name))
        rows[view.name] = len(frame)
    return {
        "transactions": len(transactions),
        "fraud": int(transactions["is_fraud"].sum()),
        "customers": config.customers,
        "start": start.isoformat(),
        "end": end.isoformat(),
        "views": rows,
        "data_dir": str(data_dir),
    }


def _write(frame: object, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp)
    tmp.replace(path)


def stream(*, bootstrap: str, topic: str, config: DemoConfig, rate: float, seconds: float, count: int) -> int:
    """Publish live transactions at `rate` per second for `seconds` (or `count` events); returns how many."""
    generator = TransactionGenerator(config)
    producer = EventProducer(bootstrap_servers=bootstrap, metrics=ServiceMetrics("demo"), client_id="loopline-demo")
    started = time.time()
    sent = 0
    try:
        for txn in generator.live(started, rate):
            if (count and sent >= count) or (not count and txn["event_timestamp"] - started >= seconds):
                break
            delay = txn["event_timestamp"] - time.time()
            if delay > 0:
                time.sleep(delay)
            producer.publish(topic, to_event(txn), key=txn["customer_id"])
            sent += 1
        if not producer.flush(timeout=30):
            raise SystemExit("demo: the broker did not acknowledge every event within 30 s")
    finally:
        producer.close()
    return sent


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="loopline_features.demo_cli", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("history", "stream"):
        p = sub.add_parser(name)
        p.add_argument("--customers", type=int, default=1000)
        p.add_argument("--merchants", type=int, default=150)
        p.add_argument("--seed", type=int, default=7)
        p.add_argument("--drift", type=float, default=0.0, help="0 = reference world, 1 = strongly shifted")
    history = sub.choices["history"]
    history.add_argument("--repo-dir", type=Path, required=True)
    history.add_argument("--data-dir", type=Path, required=True)
    history.add_argument("--environment", default="embedded", choices=["embedded", "cluster"])
    history.add_argument("--days", type=float, default=14.0)
    live = sub.choices["stream"]
    live.add_argument("--bootstrap", required=True)
    live.add_argument("--topic", default=WORKLOAD_EVENTS)
    live.add_argument("--rate", type=float, default=20.0, help="events per second")
    live.add_argument("--seconds", type=float, default=60.0)
    live.add_argument("--count", type=int, default=0, help="stop after this many events (overrides --seconds)")
    args = parser.parse_args(argv)
    if args.command == "history":
        summary = write_history(repo_dir=args.repo_dir, data_dir=args.data_dir, environment=args.environment,
                                config=_config(args), days=args.days)
    else:
        if args.rate <= 0:
            parser.error("--rate must be positive")
        sent = stream(bootstrap=args.bootstrap, topic=args.topic, config=_config(args), rate=args.rate,
                      seconds=args.seconds, count=args.count)
        summary = {"published": sent, "topic": args.topic, "at": datetime.now(UTC).isoformat()}
    sys.stdout.write(json.dumps(summary) + "\n")


if __name__ == "__main__":
    main()
