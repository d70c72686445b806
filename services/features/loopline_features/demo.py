"""The demo workload: seeded card transactions with fraud labels, and a drift knob.

`TransactionGenerator` makes customers (with a home region, credit limit, spending scale and favourite
merchants) and merchants (with a category and, for a few, a risk flag), then a stream of transactions:
Poisson arrivals with a day/night rhythm, lognormal amounts by category and customer, and fraud that
features can learn: a compromised card shows a burst of 3-8 card-not-present transactions within about
an hour, at risky merchants, for several times the customer's usual amount, often at night.

The drift knob (0 = the reference world, 1 = strongly shifted) raises amounts, moves the category mix
towards online retail and gaming, and sends a share of transactions to merchants never seen before, so
monitoring can be shown drift on purpose. Everything is deterministic for a given seed and clock.

Nothing here imports feast; `python -m loopline_features.demo` is the command `loopline demo data` runs.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd  # type: ignore[import-untyped]

from loopline.common.v1 import types_pb2
from loopline.events.v1 import meta_pb2, workload_pb2

SOURCE = "transactions"

# category: (median amount in EUR, probability the card is not present, share of transactions)
CATEGORIES: dict[str, tuple[float, float, float]] = {
    "grocery": (35.0, 0.02, 0.24),
    "fuel": (55.0, 0.01, 0.11),
    "restaurants": (28.0, 0.05, 0.15),
    "transport": (12.0, 0.30, 0.10),
    "pharmacy": (20.0, 0.05, 0.07),
    "online_retail": (60.0, 0.95, 0.15),
    "electronics": (220.0, 0.40, 0.05),
    "travel": (320.0, 0.70, 0.05),
    "gaming": (25.0, 0.98, 0.05),
    "jewelry": (450.0, 0.20, 0.03),
}
FRAUD_CATEGORIES = ("online_retail", "electronics", "gaming", "jewelry", "travel")
DRIFT_CATEGORIES = ("online_retail", "gaming")
REGIONS = ("north", "south", "east", "west", "central")
# Relative activity by hour of day (UTC): quiet nights, busy lunch and evening.
HOURLY = (0.15, 0.1, 0.08, 0.08, 0.1, 0.2, 0.4, 0.7, 0.9, 1.0, 1.0, 1.1, 1.3, 1.2, 1.0, 1.0, 1.0, 1.1, 1.3, 1.4,
          1.2, 0.9, 0.6, 0.3)


@dataclass(frozen=True)
class DemoConfig:
    customers: int = 1000
    merchants: int = 150
    seed: int = 7
    transactions_per_customer_day: float = 1.5
    # Chance that a legitimate transaction is followed by its card being compromised.
    fraud_episode_rate: float = 0.004
    drift: float = 0.0


@dataclass(frozen=True)
class Customer:
    customer_id: str
    home_region: str
    credit_limit: float
    account_age_days: int
    is_premium: bool
    amount_scale: float
    activity: float
    favourites: tuple[str, ...]


@dataclass(frozen=True)
class Merchant:
    merchant_id: str
    category: str
    risky: bool


class TransactionGenerator:
    """Seeded customers, merchants and transactions (see the module docstring)."""

    def __init__(self, config: DemoConfig) -> None:
        if not 0.0 <= config.drift <= 1.0:
            raise ValueError("drift must be between 0 and 1")
        self.config = config
        self.rng = random.Random(config.seed)  # noqa: S311 (a seeded simulation, not secrets)
        rng = self.rng
        names = list(CATEGORIES)
        weights = [CATEGORIES[c][2] for c in names]
        self.merchants: list[Merchant] = []
        for i in range(config.merchants):
            category = rng.choices(names, weights)[0]
            risky = category in FRAUD_CATEGORIES and rng.random() < 0.25
            self.merchants.append(Merchant(f"M{i:05d}", category, risky))
        self._by_category: dict[str, list[Merchant]] = {c: [] for c in names}
        for m in self.merchants:
            self._by_category[m.category].append(m)
        for c in names:  # every category has at least one merchant
            if not self._by_category[c]:
                m = Merchant(f"M{len(self.merchants):05d}", c, c in FRAUD_CATEGORIES)
                self.merchants.append(m)
                self._by_category[c].append(m)
        self._risky = [m for m in self.merchants if m.risky] or [self._by_category["online_retail"][0]]
        self._merchant = {m.merchant_id: m for m in self.merchants}
        self.customers: list[Customer] = []
        for i in range(config.customers):
            self.customers.append(
                Customer(
                    customer_id=f"C{i:06d}",
                    home_region=rng.choice(REGIONS),
                    credit_limit=round(rng.lognormvariate(math.log(3000), 0.5), 2),
                    account_age_days=rng.randint(30, 4000),
                    is_premium=rng.random() < 0.15,
                    amount_scale=rng.lognormvariate(0.0, 0.4),
                    activity=rng.gammavariate(2.0, 0.5),
                    favourites=tuple(m.merchant_id for m in rng.sample(self.merchants, min(8, len(self.merchants)))),
                )
            )
        self._activity_cdf = list(itertools.accumulate(c.activity for c in self.customers))
        drift = config.drift
        self._category_weights = [
            CATEGORIES[c][2] * (1.0 + 3.0 * drift if c in DRIFT_CATEGORIES else 1.0) for c in names
        ]
        self._category_names = names
        self._pending: list[tuple[float, int, dict[str, Any]]] = []  # fraud bursts waiting for their time
        self._counter = itertools.count()
        self._new_merchants = 0
        self.id_prefix = f"h{config.seed}"

    # ---- entities ------------------------------------------------------------------------------
    def profiles(self, as_of: datetime) -> pd.DataFrame:
        """One profile snapshot per customer, valid from `as_of`."""
        ts = pd.Timestamp(as_of).tz_convert("UTC") if pd.Timestamp(as_of).tzinfo else pd.Timestamp(as_of, tz="UTC")
        return pd.DataFrame(
            {
                "customer_id": [c.customer_id for c in self.customers],
                "event_timestamp": pd.Series([ts] * len(self.customers), dtype="datetime64[us, UTC]"),
                "created": pd.Series([ts] * len(self.customers), dtype="datetime64[us, UTC]"),
                "credit_limit": [c.credit_limit for c in self.customers],
                "account_age_days": pd.Series([c.account_age_days for c in self.customers], dtype="int64"),
                "home_region": [c.home_region for c in self.customers],
                "is_premium": [c.is_premium for c in self.customers],
            }
        )

    # ---- transactions --------------------------------------------------------------------------
    def _customer(self) -> Customer:
        x = self.rng.random() * self._activity_cdf[-1]
        return self.customers[bisect.bisect_left(self._activity_cdf, x)]

    def _merchant_for(self, customer: Customer) -> Merchant:
        rng = self.rng
        if rng.random() < 0.3 * self.config.drift:  # a merchant never seen before
            self._new_merchants += 1
            category = rng.choices(self._category_names, self._category_weights)[0]
            return Merchant(f"N{self.config.seed}-{self._new_merchants:06d}", category, False)
        if rng.random() < 0.7:
            return self._merchant[rng.choice(customer.favourites)]
        category = rng.choices(self._category_names, self._category_weights)[0]
        return rng.choice(self._by_category[category])

    def _event(self, t: float, customer: Customer, merchant: Merchant, amount: float, cnp: bool, fraud: bool
               ) -> dict[str, Any]:
        return {
            "event_id": f"{self.id_prefix}-{next(self._counter):09d}",
            "customer_id": customer.customer_id,
            "merchant_id": merchant.merchant_id,
            "event_timestamp": t,
            "amount": round(amount, 2),
            "merchant_category": merchant.category,
            "card_not_present": cnp,
            "is_fraud": fraud,
        }

    def _legit(self, t: float) -> dict[str, Any]:
        rng = self.rng
        customer = self._customer()
        merchant = self._merchant_for(customer)
        median, cnp_p, _ = CATEGORIES[merchant.category]
        amount = median * customer.amount_scale * rng.lognormvariate(0.0, 0.6) * (1.0 + 0.5 * self.config.drift)
        event = self._event(t, customer, merchant, max(amount, 0.5), rng.random() < cnp_p, False)
        if rng.random() < self.config.fraud_episode_rate:
            self._schedule_burst(t, customer)
        return event

    def _schedule_burst(self, t: float, customer: Customer) -> None:
        rng = self.rng
        start = t + rng.uniform(600, 3 * 3600)
        if rng.random() < 0.6:  # most bursts run at night (UTC)
            day = math.floor(start / 86400) * 86400
            start = max(start, day + 86400 + rng.uniform(0, 5 * 3600)) if start % 86400 > 5 * 3600 else start
        when = start
        for _ in range(rng.randint(3, 8)):
            merchant = rng.choice(self._risky)
            median = CATEGORIES[merchant.category][0]
            amount = max(median, 40.0) * customer.amount_scale * rng.uniform(3.0, 10.0)
            payload = {"customer": customer, "merchant": merchant, "amount": amount, "cnp": rng.random() < 0.9}
            heapq.heappush(self._pending, (when, next(self._counter), payload))
            when += rng.expovariate(1 / 360.0)

    def _due(self, until: float) -> Iterator[dict[str, Any]]:
        while self._pending and self._pending[0][0] <= until:
            when, _, p = heapq.heappop(self._pending)
            yield self._event(when, p["customer"], p["merchant"], p["amount"], p["cnp"], True)

    def history(self, start: datetime, end: datetime) -> pd.DataFrame:
        """Transactions with event times in [start, end), in event-time order."""
        t, stop = start.timestamp(), end.timestamp()
        rate = len(self.customers) * self.config.transactions_per_customer_day / 86400.0
        peak, mean = max(HOURLY), sum(HOURLY) / len(HOURLY)
        events: list[dict[str, Any]] = []
        while True:
            t += self.rng.expovariate(rate * peak / mean)
            events.extend(e for e in self._due(min(t, stop)) if e["event_timestamp"] >= start.timestamp())
            if t >= stop:
                break
            if self.rng.random() * peak <= HOURLY[int(t // 3600) % 24]:
                events.append(self._legit(t))
        return to_frame(events)

    def live(self, start: float, rate: float) -> Iterator[dict[str, Any]]:
        """An endless stream at `rate` events per second of event time from `start` (epoch seconds)."""
        self.id_prefix = f"l{self.config.seed}-{int(start * 1000)}"
        for k in itertools.count():
            t = start + k / rate
            yield from self._due(t)
            yield self._legit(t)


def to_frame(events: list[dict[str, Any]]) -> pd.DataFrame:
    """Transactions as the offline table (`offline/transactions.parquet`)."""
    frame = pd.DataFrame(
        events,
        columns=["event_id", "customer_id", "merchant_id", "event_timestamp", "amount", "merchant_category",
                 "card_not_present", "is_fraud"],
    )
    frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], unit="s", utc=True).astype(
        "datetime64[us, UTC]"
    )
    frame["amount"] = frame["amount"].astype("float64")
    frame["card_not_present"] = frame["card_not_present"].astype(bool)
    frame["is_fraud"] = frame["is_fraud"].astype(bool)
    return frame.sort_values("event_timestamp", kind="stable").reset_index(drop=True)


def to_event(txn: dict[str, Any], *, producer: str = "demo") -> workload_pb2.WorkloadEvent:
    """A transaction as the raw event on Kafka (`loopline.workload.events`, keyed by customer_id)."""
    ts = txn["event_timestamp"]
    seconds = ts.timestamp() if isinstance(ts, datetime | pd.Timestamp) else float(ts)
    event = workload_pb2.WorkloadEvent(
        meta=meta_pb2.EventMeta(event_id=txn["event_id"], producer=producer),
        source=SOURCE,
        entity_keys={"customer_id": txn["customer_id"], "merchant_id": txn["merchant_id"]},
        fields={
            "amount": types_pb2.Value(double_value=float(txn["amount"])),
            "merchant_category": types_pb2.Value(string_value=str(txn["merchant_category"])),
            "card_not_present": types_pb2.Value(bool_value=bool(txn["card_not_present"])),
            "is_fraud": types_pb2.Value(bool_value=bool(txn["is_fraud"])),
        },
    )
    micros = round(seconds * 1_000_000)
    event.event_time.FromMicroseconds(micros)
    event.meta.occurred_at.FromMicroseconds(micros)
    return event


def history_window(days: float, *, now: datetime | None = None) -> tuple[datetime, datetime]:
    """[now - days, now), with now rounded down to the second."""
    end = (now or datetime.now(UTC)).replace(microsecond=0)
    return end - timedelta(days=days), end
