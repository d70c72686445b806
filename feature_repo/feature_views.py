"""Feature views. Declarations only.

Streaming views say how the features service computes them from raw events, in tags:
  view tag  `loopline.stream.source`: the `WorkloadEvent.source` they aggregate ("transactions");
  view tag  `loopline.stream.window`: the event-time window, e.g. "1h", "24h", "7d";
  field tag `loopline.aggregate`: "count", or "<sum|mean|max>:<event field>".
Each streaming view has exactly one entity (the aggregation key) and its TTL equals its window: once a
window has passed without an event the stored aggregate is out of date, and reads mark it EXPIRED.
"""

from datetime import timedelta

from data_sources import (
    customer_profile_source,
    customer_txn_1h_push,
    customer_txn_7d_push,
    customer_txn_24h_push,
    merchant_risk_7d_push,
)
from entities import customer, merchant
from feast import FeatureView, Field
from feast.types import Bool, Float64, Int64, String

# Slowly changing customer attributes, loaded from profile snapshots by materialization.
customer_profile = FeatureView(
    name="customer_profile",
    entities=[customer],
    ttl=timedelta(days=365),  # a snapshot stays valid for a year
    schema=[
        Field(name="credit_limit", dtype=Float64, description="Card credit limit in EUR"),
        Field(name="account_age_days", dtype=Int64, description="Days since the account was opened"),
        Field(name="home_region", dtype=String, description="Region of the billing address"),
        Field(name="is_premium", dtype=Bool, description="Premium card holder"),
    ],
    source=customer_profile_source,
    online=True,
    description="Customer profile snapshot.",
    tags={"team": "risk"},
)

# Customer spending over the last hour: bursts are the classic sign of a stolen card.
customer_txn_1h = FeatureView(
    name="customer_txn_1h",
    entities=[customer],
    ttl=timedelta(hours=1),
    schema=[
        Field(name="txn_count_1h", dtype=Int64, tags={"loopline.aggregate": "count"}),
        Field(name="txn_amount_sum_1h", dtype=Float64, tags={"loopline.aggregate": "sum:amount"}),
        Field(name="txn_amount_max_1h", dtype=Float64, tags={"loopline.aggregate": "max:amount"}),
    ],
    source=customer_txn_1h_push,
    online=True,
    description="Customer transactions in the last hour (event time), from the raw event stream.",
    tags={"team": "risk", "loopline.stream.source": "transactions", "loopline.stream.window": "1h"},
)

# Customer spending over the last day.
customer_txn_24h = FeatureView(
    name="customer_txn_24h",
    entities=[customer],
    ttl=timedelta(hours=24),
    schema=[
        Field(name="txn_count_24h", dtype=Int64, tags={"loopline.aggregate": "count"}),
        Field(name="txn_amount_sum_24h", dtype=Float64, tags={"loopline.aggregate": "sum:amount"}),
        Field(name="txn_cnp_share_24h", dtype=Float64, tags={"loopline.aggregate": "mean:card_not_present"}),
    ],
    source=customer_txn_24h_push,
    online=True,
    description="Customer transactions in the last 24 hours (event time), from the raw event stream.",
    tags={"team": "risk", "loopline.stream.source": "transactions", "loopline.stream.window": "24h"},
)

# Customer spending over the last week: the baseline the short windows are compared with.
customer_txn_7d = FeatureView(
    name="customer_txn_7d",
    entities=[customer],
    ttl=timedelta(days=7),
    schema=[
        Field(name="txn_count_7d", dtype=Int64, tags={"loopline.aggregate": "count"}),
        Field(name="txn_amount_sum_7d", dtype=Float64, tags={"loopline.aggregate": "sum:amount"}),
        Field(name="txn_amount_mean_7d", dtype=Float64, tags={"loopline.aggregate": "mean:amount"}),
    ],
    source=customer_txn_7d_push,
    online=True,
    description="Customer transactions in the last 7 days (event time), from the raw event stream.",
    tags={"team": "risk", "loopline.stream.source": "transactions", "loopline.stream.window": "7d"},
)

# Merchant risk: volume, typical ticket and share of card-not-present payments over the last week.
merchant_risk_7d = FeatureView(
    name="merchant_risk_7d",
    entities=[merchant],
    ttl=timedelta(days=7),
    schema=[
        Field(name="merchant_txn_count_7d", dtype=Int64, tags={"loopline.aggregate": "count"}),
        Field(name="merchant_amount_mean_7d", dtype=Float64, tags={"loopline.aggregate": "mean:amount"}),
        Field(name="merchant_amount_max_7d", dtype=Float64, tags={"loopline.aggregate": "max:amount"}),
        Field(
            name="merchant_cnp_share_7d", dtype=Float64, tags={"loopline.aggregate": "mean:card_not_present"}
        ),
    ],
    source=merchant_risk_7d_push,
    online=True,
    description="Merchant transactions in the last 7 days (event time), from the raw event stream.",
    tags={"team": "risk", "loopline.stream.source": "transactions", "loopline.stream.window": "7d"},
)
