"""Data sources: where the offline history lives, and the push sources streaming aggregates come through.

Paths are relative to the store's data folder: the features service resolves them against
LOOPLINE_FEATURES_DATA_DIR; the Feast CLI against this folder (then data/ here is git-ignored).
"""

from feast import Field, FileSource, PushSource, RequestSource
from feast.types import Float64

# Raw card transactions with their fraud labels, one row per event (written by `loopline demo data`
# and by nothing else). Not a feature source: it is the label table training sets start from.
transactions_source = FileSource(
    name="transactions",
    path="offline/transactions.parquet",
    timestamp_field="event_timestamp",
    description="Raw card transactions with fraud labels (the label table for training sets).",
)

# Customer profile snapshots (batch only; loaded into the online store by materialization).
customer_profile_source = FileSource(
    name="customer_profile_source",
    path="offline/customer_profile.parquet",
    timestamp_field="event_timestamp",
    created_timestamp_column="created",
    description="Customer profile snapshots, one row per customer and snapshot time.",
)

# Streaming aggregates: the features service computes them from raw events on Kafka and pushes each
# row through the push source, online at once and to the batch source's history in micro-batches.
# `created` breaks ties between rows of one entity and event time (a late event recomputes a row).
customer_txn_1h_source = FileSource(
    name="customer_txn_1h_source",
    path="offline/customer_txn_1h.parquet",
    timestamp_field="event_timestamp",
    created_timestamp_column="created",
    description="History of the customer 1 h transaction aggregates, one row per customer and event time.",
)
customer_txn_1h_push = PushSource(
    name="customer_txn_1h_push",
    batch_source=customer_txn_1h_source,
    description="Where the stream ingester pushes customer 1 h aggregates.",
)

customer_txn_24h_source = FileSource(
    name="customer_txn_24h_source",
    path="offline/customer_txn_24h.parquet",
    timestamp_field="event_timestamp",
    created_timestamp_column="created",
    description="History of the customer 24 h transaction aggregates.",
)
customer_txn_24h_push = PushSource(
    name="customer_txn_24h_push",
    batch_source=customer_txn_24h_source,
    description="Where the stream ingester pushes customer 24 h aggregates.",
)

customer_txn_7d_source = FileSource(
    name="customer_txn_7d_source",
    path="offline/customer_txn_7d.parquet",
    timestamp_field="event_timestamp",
    created_timestamp_column="created",
    description="History of the customer 7 d transaction aggregates.",
)
customer_txn_7d_push = PushSource(
    name="customer_txn_7d_push",
    batch_source=customer_txn_7d_source,
    description="Where the stream ingester pushes customer 7 d aggregates.",
)

merchant_risk_7d_source = FileSource(
    name="merchant_risk_7d_source",
    path="offline/merchant_risk_7d.parquet",
    timestamp_field="event_timestamp",
    created_timestamp_column="created",
    description="History of the merchant 7 d risk aggregates.",
)
merchant_risk_7d_push = PushSource(
    name="merchant_risk_7d_push",
    batch_source=merchant_risk_7d_source,
    description="Where the stream ingester pushes merchant 7 d risk aggregates.",
)

# Values known only when a transaction is scored (inference passes them as request data).
transaction_request = RequestSource(
    name="transaction_request",
    schema=[Field(name="amount", dtype=Float64, description="Transaction amount in EUR")],
    description="The transaction being scored: its amount.",
)
